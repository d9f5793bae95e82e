"""Type hints of asna's native module; Python code uses the wrappers in asna/__init__.py."""

from typing import Iterable, List, Optional, Tuple, Union

_Input = Union[str, Tuple[str, bytes, Tuple[int, ...], str]]

__version__: str
WINDOW: int

def devices_json() -> str: ...
def rgb_pixels(image: _Input) -> Tuple[bytes, int, int]: ...

class NativeModel:
    adapter: str
    batch: int
    weights: List[str]
    def __init__(
        self,
        weights: List[str],
        adapter: Optional[str],
        precision: str,
        tta: bool,
        batch: int,
    ) -> None: ...
    def score_pairs(self, pairs: Iterable[Tuple[_Input, _Input]]) -> List[float]: ...
    def quality_map(self, reference: _Input, distorted: _Input) -> Tuple[bytes, int, int]: ...
