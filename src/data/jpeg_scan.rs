//! A walk over a Huffman-coded JPEG's entropy data: every block's codes are decoded, no
//! coefficient or pixel is computed. A decoder given a cut file with an end marker appended
//! fills the missing blocks with grey and reports success; this walk finds that the data ends
//! before the frame's last block (or, for a progressive frame, before its last refinement).
//!
//! Judged: sequential (baseline and extended, 8 or 12 bit) and progressive Huffman frames,
//! interleaved or not, with or without restart intervals. Arithmetic-coded, lossless and
//! hierarchical files, and frames whose height comes later in a DNL marker, are left to the
//! decoder.

/// Why a file's entropy data does not complete its frame: one clause, for a message that
/// already names the file.
pub(crate) type Incomplete = String;

/// Walks `b` (a whole JPEG file) and says whether its scans decode every block of its frame.
/// `Ok` also for what is not judged (see the module text) and for frames of more than
/// `max_pixels`, which the caller refuses by size.
pub(crate) fn check_entropy_data(b: &[u8], max_pixels: u64) -> Result<(), Incomplete> {
    let mut tables: [[Option<Huffman>; 4]; 2] = Default::default();
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0usize;
    let mut scans = 0usize;
    let mut i = 2; // after SOI
    loop {
        // Fill bytes may precede a marker.
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            // Stray bytes before a marker: decoders skip them, and so does the walk.
            i = next_marker(b, i);
        }
        let Some(&marker) = b.get(i + 1) else {
            return Err(match &frame {
                Some(f) => format!("{} the file ends before its end-of-image marker", f.name()),
                None => "the file ends before its end-of-image marker".to_string(),
            });
        };
        if marker == 0xD9 {
            return match &frame {
                Some(f) => f.check_refined(),
                None => Ok(()),
            };
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        let Some(len) = b
            .get(i + 2..i + 4)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        else {
            return Err(format!(
                "its marker segment 0x{marker:02X} at byte {i} is cut short"
            ));
        };
        let Some(n) = len.checked_sub(2) else {
            return Ok(());
        };
        let Some(segment) = b.get(i + 4..i + 4 + n) else {
            return Err(format!(
                "its marker segment 0x{marker:02X} at byte {i} runs past the end of the file"
            ));
        };
        i += 2 + len;
        match marker {
            0xC4 => define_huffman_tables(segment, &mut tables)?,
            0xDD if segment.len() >= 2 => {
                restart_interval = u16::from_be_bytes([segment[0], segment[1]]) as usize
            }
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return Ok(()); // more than one frame: hierarchical
                }
                match Frame::parse(marker == 0xC2, segment) {
                    Some(f) if f.height > 0 && f.pixels() <= max_pixels => frame = Some(f),
                    _ => return Ok(()),
                }
            }
            // Other frame kinds (lossless, arithmetic, hierarchical): not judged.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(()),
            0xDA => {
                let Some(f) = frame.as_mut() else {
                    return Ok(());
                };
                scans += 1;
                let scan = Scan::parse(segment, f)
                    .ok_or_else(|| format!("{} scan {scans} has a malformed header", f.name()))?;
                let mut bits = Bits::new(b, i);
                f.walk_scan(&scan, &tables, restart_interval, &mut bits)
                    .map_err(|e| format!("{} scan {scans} {e}", f.name()))?;
                i = next_marker(b, bits.pos);
            }
            _ => {}
        }
    }
}

/// The offset of the first marker at or after `i` that is not a restart marker (the end of a
/// scan's entropy data).
fn next_marker(b: &[u8], mut i: usize) -> usize {
    while i + 1 < b.len() {
        if b[i] == 0xFF && !matches!(b[i + 1], 0x00 | 0xFF | 0xD0..=0xD7) {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// A Huffman table: a 9-bit lookup for the short codes (most symbols), and the canonical
/// code ranges per length for the rest.
struct Huffman {
    /// `(length << 8) | symbol` for each 9-bit prefix that starts a code of at most 9 bits; 0
    /// where the code is longer.
    short: Vec<u16>,
    /// Per code length 1..=16: the largest code (-1 when none), the first code, and the index of
    /// its symbol.
    max_code: [i32; 17],
    min_code: [i32; 17],
    first_symbol: [usize; 17],
    symbols: Vec<u8>,
}

const SHORT_BITS: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Option<Huffman> {
        let mut table = Huffman {
            short: vec![0; 1 << SHORT_BITS],
            max_code: [-1; 17],
            min_code: [0; 17],
            first_symbol: [0; 17],
            symbols: symbols.to_vec(),
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            table.first_symbol[len as usize] = k;
            table.min_code[len as usize] = code;
            for _ in 0..n {
                if code >= 1 << len {
                    return None; // more codes than this length can hold
                }
                if len <= SHORT_BITS {
                    let shift = SHORT_BITS - len;
                    let entry = ((len as u16) << 8) | symbols[k] as u16;
                    let start = (code as usize) << shift;
                    table.short[start..start + (1 << shift)].fill(entry);
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                table.max_code[len as usize] = code - 1;
            }
            code <<= 1;
        }
        Some(table)
    }

    /// The next symbol, or why there is none.
    fn decode(&self, bits: &mut Bits) -> Result<u8, &'static str> {
        bits.fill();
        let peek = (bits.acc >> 48) as u32; // the next 16 bits, zero past the data
        let short = self.short[(peek >> (16 - SHORT_BITS)) as usize];
        if short != 0 {
            let len = (short >> 8) as u32;
            bits.consume(len)?;
            return Ok(short as u8);
        }
        for len in 1..=16u32 {
            let code = (peek >> (16 - len)) as i32;
            if code <= self.max_code[len as usize] {
                bits.consume(len)?;
                let index =
                    self.first_symbol[len as usize] + (code - self.min_code[len as usize]) as usize;
                return self.symbols.get(index).copied().ok_or(CORRUPT);
            }
        }
        if bits.n < 16 {
            Err(ENDS_EARLY)
        } else {
            Err(CORRUPT)
        }
    }
}

const ENDS_EARLY: &str = "ends early";
const CORRUPT: &str = "holds an invalid Huffman code";

fn define_huffman_tables(
    mut s: &[u8],
    tables: &mut [[Option<Huffman>; 4]; 2],
) -> Result<(), Incomplete> {
    while !s.is_empty() {
        let bad = || "a Huffman table segment is malformed".to_string();
        let (class, id) = ((s[0] >> 4) as usize, (s[0] & 15) as usize);
        let counts: [u8; 16] = s.get(1..17).ok_or_else(bad)?.try_into().unwrap();
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let symbols = s.get(17..17 + n).ok_or_else(bad)?;
        if class > 1 || id > 3 || n > 256 {
            return Err(bad());
        }
        tables[class][id] = Some(Huffman::new(&counts, symbols).ok_or_else(bad)?);
        s = &s[17 + n..];
    }
    Ok(())
}

/// Entropy-coded bits: bytes after their 0xFF00 stuffing is removed, up to the next marker.
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
    /// Buffered bits, most significant first; `n` of them are valid.
    acc: u64,
    n: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(b: &'a [u8], pos: usize) -> Bits<'a> {
        Bits {
            b,
            pos,
            acc: 0,
            n: 0,
            at_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.n <= 56 && !self.at_marker {
            let Some(&byte) = self.b.get(self.pos) else {
                self.at_marker = true;
                break;
            };
            if byte == 0xFF {
                if self.b.get(self.pos + 1) != Some(&0) {
                    self.at_marker = true;
                    break;
                }
                self.pos += 1; // the stuffed zero
            }
            self.pos += 1;
            self.acc |= (byte as u64) << (56 - self.n);
            self.n += 8;
        }
    }

    fn consume(&mut self, len: u32) -> Result<(), &'static str> {
        if len > self.n {
            return Err(ENDS_EARLY);
        }
        self.acc <<= len;
        self.n -= len;
        Ok(())
    }

    /// Skips `len` (at most 16) raw bits.
    fn skip(&mut self, len: u32) -> Result<(), &'static str> {
        self.fill();
        self.consume(len)
    }

    /// Reads `len` (at most 16) raw bits.
    fn read(&mut self, len: u32) -> Result<u32, &'static str> {
        self.fill();
        let v = if len == 0 {
            0
        } else {
            (self.acc >> (64 - len)) as u32
        };
        self.consume(len)?;
        Ok(v)
    }

    /// Drops the padding of the interval that ends here and steps over its restart marker.
    fn restart(&mut self) -> Result<(), &'static str> {
        self.acc = 0;
        self.n = 0;
        self.fill();
        let mut i = self.pos;
        while self.b.get(i) == Some(&0xFF) && self.b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        match (self.b.get(i), self.b.get(i + 1)) {
            (Some(&0xFF), Some(0xD0..=0xD7)) if self.n == 0 => {
                self.pos = i + 2;
                self.at_marker = false;
                Ok(())
            }
            _ if self.at_marker && self.n == 0 => Err(ENDS_EARLY),
            _ => Err("lacks a restart marker"),
        }
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    /// Width and height in blocks of the component's own samples (no MCU padding).
    blocks_wide: usize,
    blocks_high: usize,
    /// Progressive only: the nonzero coefficients of each block, once an AC scan has coded some
    /// (refinement scans spend a correction bit on each).
    nonzero: Vec<u64>,
    /// Progressive only: per coefficient, the lowest bit coded so far (-1: not yet coded).
    coded_down_to: [i8; 64],
}

struct Frame {
    progressive: bool,
    width: usize,
    height: usize,
    components: Vec<Component>,
    mcus_wide: usize,
    mcus_high: usize,
    /// Block visits left: scans whose EOB runs cost no bits could otherwise make a small file
    /// walk for minutes.
    visits_left: u64,
}

/// How many times the scans may visit each block: an encoder's progressive script visits each
/// about 4 to 10 times.
const VISITS_PER_BLOCK: u64 = 64;

impl Frame {
    fn parse(progressive: bool, s: &[u8]) -> Option<Frame> {
        let height = u16::from_be_bytes([*s.get(1)?, *s.get(2)?]) as usize;
        let width = u16::from_be_bytes([*s.get(3)?, *s.get(4)?]) as usize;
        let n = *s.get(5)? as usize;
        let raw = s.get(6..6 + 3 * n)?;
        let sampling: Vec<(u8, usize, usize)> = raw
            .chunks_exact(3)
            .map(|c| (c[0], (c[1] >> 4) as usize, (c[1] & 15) as usize))
            .collect();
        if n == 0
            || width == 0
            || sampling
                .iter()
                .any(|&(_, h, v)| !(1..=4).contains(&h) || !(1..=4).contains(&v))
        {
            return None;
        }
        let hmax = sampling.iter().map(|c| c.1).max()?;
        let vmax = sampling.iter().map(|c| c.2).max()?;
        let components: Vec<Component> = sampling
            .iter()
            .map(|&(id, h, v)| Component {
                id,
                h,
                v,
                blocks_wide: (width * h).div_ceil(hmax).div_ceil(8),
                blocks_high: (height * v).div_ceil(vmax).div_ceil(8),
                nonzero: Vec::new(),
                coded_down_to: [-1; 64],
            })
            .collect();
        let blocks: u64 = components
            .iter()
            .map(|c| (c.blocks_wide * c.blocks_high) as u64)
            .sum();
        Some(Frame {
            visits_left: blocks * VISITS_PER_BLOCK,
            progressive,
            width,
            height,
            components,
            mcus_wide: width.div_ceil(8 * hmax),
            mcus_high: height.div_ceil(8 * vmax),
        })
    }

    fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }

    fn name(&self) -> String {
        let kind = if self.progressive {
            "progressive"
        } else {
            "sequential"
        };
        format!(
            "its {kind} frame declares {}x{} pixels, but",
            self.width, self.height
        )
    }

    /// A progressive frame is complete when every coefficient of every component has been
    /// coded down to its last bit.
    fn check_refined(&self) -> Result<(), Incomplete> {
        if !self.progressive {
            return Ok(());
        }
        for (c, comp) in self.components.iter().enumerate() {
            if let Some(k) = comp.coded_down_to.iter().position(|&al| al != 0) {
                let state = match comp.coded_down_to[k] {
                    -1 => "never coded".to_string(),
                    al => format!("coded only down to bit {al}"),
                };
                return Err(format!(
                    "{} its scans end before the frame is complete (component {}, coefficient {k} \
                     {state})",
                    self.name(),
                    c + 1
                ));
            }
        }
        Ok(())
    }

    fn walk_scan(
        &mut self,
        scan: &Scan,
        tables: &[[Option<Huffman>; 4]; 2],
        restart_interval: usize,
        bits: &mut Bits,
    ) -> Result<(), String> {
        let table = |class: usize, id: usize| {
            tables[class][id]
                .as_ref()
                .ok_or_else(|| format!("uses Huffman table {id} before it is defined"))
        };
        // The table each coded part needs: DC for sequential scans and first DC passes, AC for
        // sequential scans and every AC pass.
        let kind = scan.kind(self.progressive);
        let mut coders = Vec::new();
        for &(c, dc, ac) in &scan.components {
            let dc = match kind {
                ScanKind::Sequential | ScanKind::DcFirst => Some(table(0, dc)?),
                _ => None,
            };
            let ac = match kind {
                ScanKind::Sequential | ScanKind::AcFirst | ScanKind::AcRefine => {
                    Some(table(1, ac)?)
                }
                _ => None,
            };
            coders.push((c, dc, ac));
        }
        if matches!(kind, ScanKind::AcFirst | ScanKind::AcRefine) {
            let comp = &mut self.components[scan.components[0].0];
            if comp.nonzero.is_empty() {
                comp.nonzero = vec![0; comp.blocks_wide * comp.blocks_high];
            }
        }
        let interleaved = scan.components.len() > 1;
        let mcus = if interleaved {
            self.mcus_wide * self.mcus_high
        } else {
            let comp = &self.components[scan.components[0].0];
            comp.blocks_wide * comp.blocks_high
        };
        let blocks_per_mcu: usize = if interleaved {
            scan.components
                .iter()
                .map(|&(c, _, _)| self.components[c].h * self.components[c].v)
                .sum()
        } else {
            1
        };
        let visits = (mcus * blocks_per_mcu) as u64;
        if visits > self.visits_left {
            return Err(format!(
                "would visit each block more than {VISITS_PER_BLOCK} times (more scans than an \
                 encoder writes)"
            ));
        }
        self.visits_left -= visits;
        let mut eob_run = 0u32;
        for mcu in 0..mcus {
            let at = |e: &str| format!("{e} after {mcu} of its {mcus} MCUs");
            if restart_interval > 0 && mcu > 0 && mcu % restart_interval == 0 {
                bits.restart().map_err(at)?;
                eob_run = 0;
            }
            for &(c, dc, ac) in &coders {
                let comp = &mut self.components[c];
                let blocks = if interleaved { comp.h * comp.v } else { 1 };
                for _ in 0..blocks {
                    let nonzero = if interleaved {
                        None
                    } else {
                        comp.nonzero.get_mut(mcu)
                    };
                    walk_block(kind, scan, dc, ac, nonzero, &mut eob_run, bits).map_err(at)?;
                }
            }
        }
        if self.progressive {
            for &(c, _, _) in &scan.components {
                let comp = &mut self.components[c];
                comp.coded_down_to[scan.start..=scan.end].fill(scan.low_bit as i8);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ScanKind {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

struct Scan {
    /// (frame component index, DC table, AC table) of each component in the scan.
    components: Vec<(usize, usize, usize)>,
    start: usize,
    end: usize,
    high_bit: u8,
    low_bit: u8,
}

impl Scan {
    fn parse(s: &[u8], frame: &Frame) -> Option<Scan> {
        let n = *s.first()? as usize;
        let raw = s.get(1..1 + 2 * n)?;
        let components = raw
            .chunks_exact(2)
            .map(|c| {
                let index = frame.components.iter().position(|f| f.id == c[0])?;
                let (dc, ac) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                (dc < 4 && ac < 4).then_some((index, dc, ac))
            })
            .collect::<Option<Vec<_>>>()?;
        let tail = s.get(1 + 2 * n..4 + 2 * n)?;
        let scan = Scan {
            components,
            start: tail[0] as usize,
            end: tail[1] as usize,
            high_bit: tail[2] >> 4,
            low_bit: tail[2] & 15,
        };
        let valid = if frame.progressive {
            scan.start <= scan.end
                && scan.end < 64
                && (scan.start > 0 || scan.end == 0)
                && (scan.start == 0 || n == 1)
                && scan.low_bit < 14
                && (scan.high_bit == 0 || scan.high_bit == scan.low_bit + 1)
        } else {
            true
        };
        (valid && n >= 1).then_some(scan)
    }

    fn kind(&self, progressive: bool) -> ScanKind {
        match (progressive, self.start == 0, self.high_bit == 0) {
            (false, _, _) => ScanKind::Sequential,
            (true, true, true) => ScanKind::DcFirst,
            (true, true, false) => ScanKind::DcRefine,
            (true, false, true) => ScanKind::AcFirst,
            (true, false, false) => ScanKind::AcRefine,
        }
    }
}

/// Steps over one block's codes (ITU T.81 F.2.2 and G.1.2; the refinement pass as libjpeg's
/// `decode_mcu_AC_refine` reads it).
fn walk_block(
    kind: ScanKind,
    scan: &Scan,
    dc: Option<&Huffman>,
    ac: Option<&Huffman>,
    nonzero: Option<&mut u64>,
    eob_run: &mut u32,
    bits: &mut Bits,
) -> Result<(), &'static str> {
    let mut scratch = 0u64;
    let nonzero = nonzero.unwrap_or(&mut scratch);
    match kind {
        ScanKind::Sequential | ScanKind::DcFirst => {
            let size = dc.expect("DC table").decode(bits)? as u32;
            if size > 16 {
                return Err(CORRUPT);
            }
            bits.skip(size)?;
            if kind == ScanKind::DcFirst {
                return Ok(());
            }
            let ac = ac.expect("AC table");
            let mut k = 1;
            while k < 64 {
                let rs = ac.decode(bits)?;
                let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
                if size == 0 {
                    if run != 15 {
                        break; // end of block
                    }
                    k += 16;
                } else {
                    k += run;
                    bits.skip(size)?;
                    k += 1;
                }
            }
        }
        ScanKind::DcRefine => bits.skip(1)?,
        ScanKind::AcFirst => {
            if *eob_run > 0 {
                *eob_run -= 1;
                return Ok(());
            }
            let ac = ac.expect("AC table");
            let mut k = scan.start;
            while k <= scan.end {
                let rs = ac.decode(bits)?;
                let (run, size) = ((rs >> 4) as u32, (rs & 15) as u32);
                if size == 0 {
                    if run < 15 {
                        *eob_run = (1 << run) - 1 + bits.read(run)?;
                        break;
                    }
                    k += 16;
                } else {
                    k += run as usize;
                    bits.skip(size)?;
                    mark_nonzero(nonzero, k);
                    k += 1;
                }
            }
        }
        ScanKind::AcRefine => {
            let ac = ac.expect("AC table");
            let mut k = scan.start;
            if *eob_run == 0 {
                while k <= scan.end {
                    let rs = ac.decode(bits)?;
                    let (mut run, size) = ((rs >> 4) as u32, (rs & 15) as u32);
                    if size == 0 && run < 15 {
                        *eob_run = (1 << run) + bits.read(run)?;
                        break;
                    }
                    if size > 1 {
                        return Err(CORRUPT);
                    }
                    if size == 1 {
                        bits.skip(1)?; // the new coefficient's sign
                    }
                    // Correction bits for coefficients already nonzero, up to the new one's
                    // place after `run` zeros (or 16 zeros for a ZRL).
                    while k <= scan.end {
                        if *nonzero & (1 << k) != 0 {
                            bits.skip(1)?;
                        } else {
                            if run == 0 {
                                break;
                            }
                            run -= 1;
                        }
                        k += 1;
                    }
                    if size == 1 {
                        mark_nonzero(nonzero, k);
                    }
                    k += 1;
                }
            }
            if *eob_run > 0 {
                while k <= scan.end {
                    if *nonzero & (1 << k) != 0 {
                        bits.skip(1)?;
                    }
                    k += 1;
                }
                *eob_run -= 1;
            }
        }
    }
    Ok(())
}

/// Like decoders, a coefficient placed past the band's end (a corrupt run) is tolerated, and
/// only remembered when it lies inside the block.
fn mark_nonzero(nonzero: &mut u64, k: usize) {
    if k < 64 {
        *nonzero |= 1 << k;
    }
}
