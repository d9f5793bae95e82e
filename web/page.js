// The page: two images in (chosen, dropped or named in the address), the score and quality
// map out. `index.html?ref=URL&dist=URL` scores those two images on load and logs exactly one
// console line, `asna score: VALUE` or `asna error: MESSAGE`, for scripts and tests;
// `&kernels=gpu` or `&kernels=cpu` chooses the plan instead of the adapter's kind.

import { AsnaError, NO_WEBGPU, loadModel, qualityMapImage, readImage } from "./asna.js";

const $ = (id) => document.getElementById(id);
const chosen = { reference: null, distorted: null };
const query = new URLSearchParams(location.search);
let modelPromise = null;

function showProgress(p) {
  const bar = $("progress");
  bar.hidden = p.total === undefined || p.done >= p.total;
  if (p.total) {
    bar.max = p.total;
    bar.value = p.done;
  }
  $("status").textContent = p.message ?? "";
}

function showError(message) {
  $("error").textContent = message;
  $("progress").hidden = true;
  $("status").textContent = "";
}

function model() {
  const options = { onProgress: showProgress, kernels: query.get("kernels") ?? undefined };
  modelPromise ??= loadModel(new URL("./", import.meta.url), options).then((m) => {
    $("adapter").textContent = `${m.adapterName} (${m.kernels} kernels)`;
    return m;
  });
  return modelPromise;
}

function messageOf(e) {
  return e instanceof AsnaError ? e.message : `unexpected error: ${e?.message ?? e}`;
}

async function scorePair(referenceSource, distortedSource) {
  // The images first, so that bad input is reported before the shaders compile.
  const [r, d] = await Promise.all([
    readImage(referenceSource, "reference"),
    readImage(distortedSource, "distorted"),
  ]);
  const m = await model();
  const result = await m.scoreDecoded(r, d, { onProgress: showProgress });
  $("result").hidden = false;
  $("score").textContent = result.score.toFixed(4);
  $("details").textContent =
    `${r.width}x${r.height}, ${result.windows} window${result.windows === 1 ? "" : "s"}, ` +
    `${(result.milliseconds / 1000).toFixed(2)} s on ${m.adapterName}`;
  const canvas = $("map");
  canvas.width = result.width;
  canvas.height = result.height;
  canvas.getContext("2d").putImageData(qualityMapImage(result, d), 0, 0);
  showProgress({ message: "" });
  return result;
}

async function scoreChosen() {
  if (!chosen.reference || !chosen.distorted) return;
  $("error").textContent = "";
  try {
    await scorePair(chosen.reference, chosen.distorted);
  } catch (e) {
    showError(messageOf(e));
  }
}

function setUpDrop(role, dropId, inputId) {
  const drop = $(dropId);
  const take = (file) => {
    if (!file) return;
    chosen[role] = file;
    const name = drop.querySelector(".name");
    name.textContent = file.name;
    let img = drop.querySelector("img");
    if (!img) {
      img = document.createElement("img");
      img.alt = role;
      drop.insertBefore(img, name);
    }
    img.src = URL.createObjectURL(file);
    scoreChosen();
  };
  $(inputId).addEventListener("change", (e) => take(e.target.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    take(e.dataTransfer.files[0]);
  });
}

setUpDrop("reference", "ref-drop", "ref-file");
setUpDrop("distorted", "dist-drop", "dist-file");
$("demo").addEventListener("click", async () => {
  $("error").textContent = "";
  try {
    await scorePair(new URL("demo/ref.png", import.meta.url), new URL("demo/dist.png", import.meta.url));
  } catch (e) {
    showError(messageOf(e));
  }
});

if (query.has("ref") || query.has("dist")) {
  const run = async () => {
    if (!query.get("ref") || !query.get("dist")) {
      throw new AsnaError("the address needs both ref=URL and dist=URL");
    }
    return scorePair(new URL(query.get("ref"), location.href), new URL(query.get("dist"), location.href));
  };
  run().then(
    (result) => console.log(`asna score: ${result.score}`),
    (e) => {
      const message = messageOf(e);
      showError(message);
      console.log(`asna error: ${message}`);
    },
  );
} else if (!navigator.gpu) {
  showError(NO_WEBGPU);
} else {
  // Compile the shaders while the user chooses images.
  model().then(
    () => showProgress({ message: "ready" }),
    (e) => showError(messageOf(e)),
  );
}
