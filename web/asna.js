// asna.js: the ASNA full-reference image quality model in any browser with WebGPU.
//
// The model is not written here: a plan file (recorded from the asna engine by `asna web`)
// lists the buffers, the WGSL pipelines and every dispatch of one scoring pass, and this
// module replays it. Images are covered by 288x288 windows and the score is the mean over
// them, as `asna score` does, so the two agree.
//
//   import { loadModel } from "./asna.js";
//   const model = await loadModel("./", { onProgress: (p) => console.log(p) });
//   const result = await model.score(referenceFileOrUrl, distortedFileOrUrl);
//   result.score;   // predicted mean opinion score (higher is better)
//   result.map;     // Float32Array, width x height: where the model sees degradation
//
// Images may be URLs, Blobs/Files, ImageData, ImageBitmaps, <img> elements or canvases.
// Errors are AsnaError, with a one-line message meant for people.

export const PLAN_FORMAT = "asna-plan";
export const PLAN_VERSION = 1;
export const SITE_FORMAT = "asna-site";

export class AsnaError extends Error {
  constructor(message) {
    super(message);
    this.name = "AsnaError";
  }
}

export const NO_WEBGPU =
  "this browser has no WebGPU (navigator.gpu is missing): use Chrome or Edge 113 or later, " +
  "Safari 26 or later, or Firefox 141 or later on Windows, with the page served over https " +
  "or from localhost";

// ---------------------------------------------------------------------------------------
// Windows: as few 288x288 windows as cover each axis, spread evenly from edge to edge.

export function windowStarts(length, size) {
  const count = Math.ceil(length / size);
  if (count === 1) return [0];
  return Array.from({ length: count }, (_, i) => Math.round((i * (length - size)) / (count - 1)));
}

export function windows(width, height, size) {
  const xs = windowStarts(width, size);
  const ys = windowStarts(height, size);
  return ys.flatMap((y) => xs.map((x) => [x, y]));
}

// ---------------------------------------------------------------------------------------
// Images: decoded without colour management, to RGB bytes as asna's decoder gives them.

function sourceName(source, fallback) {
  if (typeof source === "string") return source;
  if (source instanceof URL) return source.href;
  if (typeof File !== "undefined" && source instanceof File) return source.name;
  return fallback;
}

async function blobToBitmap(blob, name) {
  try {
    return await createImageBitmap(blob, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
  } catch {
    throw new AsnaError(`${name} is not an image this browser can decode`);
  }
}

function pixelsOf(drawable, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(drawable, 0, 0);
  return ctx.getImageData(0, 0, width, height).data;
}

function rgbFromRgba(rgba, width, height) {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgb[i] = rgba[j];
    rgb[i + 1] = rgba[j + 1];
    rgb[i + 2] = rgba[j + 2];
  }
  return rgb;
}

/** Decodes `source` to { name, width, height, rgb } (rgb: Uint8Array, rows top to bottom). */
export async function readImage(source, fallbackName = "image") {
  const name = sourceName(source, fallbackName);
  let bitmap = null;
  if (typeof source === "string" || source instanceof URL) {
    let response;
    try {
      response = await fetch(source);
    } catch (e) {
      throw new AsnaError(`${name}: cannot fetch (${e.message})`);
    }
    if (!response.ok) throw new AsnaError(`${name}: cannot fetch (HTTP ${response.status})`);
    bitmap = await blobToBitmap(await response.blob(), name);
  } else if (source instanceof Blob) {
    bitmap = await blobToBitmap(source, name);
  } else if (typeof ImageData !== "undefined" && source instanceof ImageData) {
    return { name, width: source.width, height: source.height, rgb: rgbFromRgba(source.data, source.width, source.height) };
  } else if (source && typeof source.width === "number" && typeof source.height === "number") {
    // ImageBitmap, <img>, <canvas>, OffscreenCanvas, VideoFrame.
    const width = source.naturalWidth || source.displayWidth || source.width;
    const height = source.naturalHeight || source.displayHeight || source.height;
    if (!width || !height) throw new AsnaError(`${name} has no pixels (not loaded yet?)`);
    return { name, width, height, rgb: rgbFromRgba(pixelsOf(source, width, height), width, height) };
  } else {
    throw new AsnaError(`${name}: expected a URL, Blob, File, ImageData, ImageBitmap, image or canvas`);
  }
  const { width, height } = bitmap;
  const rgb = rgbFromRgba(pixelsOf(bitmap, width, height), width, height);
  bitmap.close();
  return { name, width, height, rgb };
}

/** The error of a pair the model cannot score, or null: as `asna score` words it. */
export function pairProblem(reference, distorted, size) {
  if (reference.width !== distorted.width || reference.height !== distorted.height) {
    return `reference ${reference.name} is ${reference.width}x${reference.height} but distorted ` +
      `${distorted.name} is ${distorted.width}x${distorted.height}: the two images must have the same size`;
  }
  if (reference.width < size || reference.height < size) {
    return `images are ${reference.width}x${reference.height}, smaller than the model's ${size}x${size} input`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Loading: the site's manifest, the plan for this adapter, its weights and shaders.

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new AsnaError(`${what} ${url}: cannot fetch (${e.message})`);
  }
  if (!response.ok) throw new AsnaError(`${what} ${url}: cannot fetch (HTTP ${response.status})`);
  return response;
}

async function fetchJson(url, what) {
  const response = await fetchOk(url, what);
  try {
    return await response.json();
  } catch {
    throw new AsnaError(`${what} ${url}: not valid JSON`);
  }
}

/** Whether the adapter is a CPU implementation (its plan uses the CPU-driver kernels). */
export function isCpuAdapter(info) {
  if (!info) return false;
  if (info.isFallbackAdapter) return true;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return /swiftshader|llvmpipe|lavapipe|software|microsoft basic render|warp/i.test(text);
}

export function adapterName(info) {
  if (!info) return "unknown adapter";
  const parts = [info.description, info.vendor, info.architecture, info.device].filter(Boolean);
  return parts.length ? [...new Set(parts)].join(" ") : "unnamed adapter";
}

function checkPlan(plan, url) {
  if (!plan || plan.format !== PLAN_FORMAT) throw new AsnaError(`${url}: not a plan file`);
  if (plan.version !== PLAN_VERSION) {
    throw new AsnaError(`${url}: plan version ${plan.version}; this page reads version ${PLAN_VERSION}`);
  }
  for (const key of ["buffers", "pipelines", "commands", "inputs", "outputs", "shaders"]) {
    if (!Array.isArray(plan[key])) throw new AsnaError(`${url}: malformed plan (no ${key})`);
  }
}

const LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
];

/**
 * Loads the model of a site written by `asna web` (the directory holding model.json).
 * Options: onProgress({ stage, done, total, message }), kernels ("gpu" or "cpu": which
 * plan; chosen by adapter otherwise), adapter (a GPUAdapter to use).
 */
export async function loadModel(base = new URL("./", import.meta.url), options = {}) {
  const progress = options.onProgress ?? (() => {});
  if (typeof navigator === "undefined" || !navigator.gpu) throw new AsnaError(NO_WEBGPU);
  const adapter = options.adapter ?? (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }));
  if (!adapter) {
    throw new AsnaError("this browser has WebGPU but offers no adapter (WebGPU may be disabled or blocked for this GPU)");
  }
  let baseUrl = new URL(base, globalThis.location?.href);
  if (!baseUrl.pathname.endsWith("/") && !baseUrl.pathname.endsWith(".json")) baseUrl = new URL(baseUrl.href + "/");
  const manifestUrl = baseUrl.pathname.endsWith(".json") ? baseUrl : new URL("model.json", baseUrl);
  progress({ stage: "load", message: "loading the model" });
  const manifest = await fetchJson(manifestUrl, "model");
  if (manifest.format !== SITE_FORMAT || !manifest.plans) throw new AsnaError(`${manifestUrl}: not an asna model manifest`);
  const kernels = options.kernels ?? (isCpuAdapter(adapter.info) ? "cpu" : "gpu");
  if (!manifest.plans[kernels]) throw new AsnaError(`${manifestUrl}: no plan for ${kernels} kernels`);
  const planUrl = new URL(manifest.plans[kernels], manifestUrl);
  const plan = await fetchJson(planUrl, "plan");
  checkPlan(plan, planUrl);
  const weightsUrl = new URL(plan.weights, planUrl);
  const [weights, shaders] = await Promise.all([
    fetchOk(weightsUrl, "weights").then((r) => r.arrayBuffer()),
    Promise.all(plan.shaders.map((s) => fetchOk(new URL(`shaders/${s}`, planUrl), "shader").then((r) => r.text()))),
  ]);
  if (weights.byteLength !== plan.weights_bytes) {
    throw new AsnaError(`${weightsUrl}: ${weights.byteLength} bytes, but the plan expects ${plan.weights_bytes}`);
  }
  const largest = Math.max(...plan.buffers.map((b) => b.size));
  if (largest > adapter.limits.maxBufferSize || largest > adapter.limits.maxStorageBufferBindingSize) {
    throw new AsnaError(`this adapter's buffers are too small for the model (${largest} bytes needed)`);
  }
  const requiredLimits = {};
  for (const name of LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredLimits, label: "asna" });
  const model = new Model(device, adapter, plan, new Uint8Array(weights), shaders, kernels);
  await model.build(progress);
  return model;
}

// ---------------------------------------------------------------------------------------
// Replaying a plan (the format is described in src/plan/mod.rs of asna).

export class Model {
  constructor(device, adapter, plan, weights, shaderTexts, kernels) {
    this.device = device;
    this.adapter = adapter;
    this.adapterName = adapterName(adapter.info);
    this.plan = plan;
    this.kernels = kernels;
    this.weights = weights;
    this.shaderTexts = shaderTexts;
    this.window = plan.window;
    this.lost = null;
    device.lost.then((info) => {
      this.lost = info.message || "the GPU device was lost";
    });
  }

  async build(progress) {
    const { device, plan, weights } = this;
    device.pushErrorScope("validation");
    device.pushErrorScope("out-of-memory");
    // As the engine's buffers: storage, readable as uniform windows, copied both ways.
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.buffers = plan.buffers.map((b) => {
      const buffer = device.createBuffer({ size: b.size, usage });
      if (b.init) device.queue.writeBuffer(buffer, 0, weights, b.init[0], b.init[1]);
      return buffer;
    });
    const modules = [];
    for (let i = 0; i < plan.shaders.length; i++) {
      const module = device.createShaderModule({ label: plan.shaders[i], code: this.shaderTexts[i] });
      const info = await module.getCompilationInfo();
      const error = info.messages.find((m) => m.type === "error");
      if (error) throw new AsnaError(`shader ${plan.shaders[i]}:${error.lineNum}: ${error.message}`);
      modules.push(module);
    }
    const layouts = plan.pipelines.map((p) => {
      const entries = [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } }];
      p.bindings.forEach((b, i) => {
        const buffer =
          b === "read" ? { type: "read-only-storage" } :
          b === "read_write" ? { type: "storage" } :
          { type: "uniform", minBindingSize: 65536 };
        entries.push({ binding: i + 1, visibility: GPUShaderStage.COMPUTE, buffer });
      });
      return device.createBindGroupLayout({ entries });
    });
    // Pipelines compile in parallel; a CPU adapter takes seconds for the larger ones.
    let done = 0;
    const total = plan.pipelines.length;
    progress({ stage: "compile", done, total, message: `compiling shaders 0/${total}` });
    this.pipelines = await Promise.all(
      plan.pipelines.map(async (p, i) => {
        const pipeline = await device
          .createComputePipelineAsync({
            label: p.entry,
            layout: device.createPipelineLayout({ bindGroupLayouts: [layouts[i]] }),
            compute: { module: modules[p.shader], entryPoint: p.entry, constants: p.constants },
          })
          .catch((e) => {
            throw new AsnaError(`pipeline ${plan.shaders[p.shader]}:${p.entry}: ${e.message}`);
          });
        done += 1;
        progress({ stage: "compile", done, total, message: `compiling shaders ${done}/${total}` });
        return pipeline;
      }),
    );
    // Every dispatch's parameter block, a slot each, written once.
    const slot = plan.param_slot;
    const dispatches = plan.commands.filter((c) => c.op === "dispatch");
    const params = new Uint32Array((Math.max(dispatches.length, 1) * slot) / 4);
    dispatches.forEach((c, i) => params.set(c.params, (i * slot) / 4));
    this.params = device.createBuffer({ size: params.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(this.params, 0, params);
    this.bindGroups = dispatches.map((c, i) => {
      const entries = [{ binding: 0, resource: { buffer: this.params, offset: i * slot, size: slot } }];
      c.bind.forEach(([b, offset, size], k) => {
        const resource = { buffer: this.buffers[b], offset };
        if (size !== null && size !== undefined) resource.size = size;
        entries.push({ binding: k + 1, resource });
      });
      return device.createBindGroup({ layout: layouts[c.pipeline], entries });
    });
    this.staging = plan.outputs.map((o) =>
      device.createBuffer({ size: Math.ceil(o.bytes / 4) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
    );
    const oom = await device.popErrorScope();
    const invalid = await device.popErrorScope();
    if (oom) throw new AsnaError(`out of GPU memory while loading the model: ${oom.message}`);
    if (invalid) throw new AsnaError(`the GPU refused the model: ${invalid.message}`);
  }

  /** One pass of the plan: `inputs` maps input names to bytes; returns outputs' bytes. */
  async run(inputs) {
    const { device, plan } = this;
    const queue = device.queue;
    if (this.lost) throw new AsnaError(`GPU device lost: ${this.lost}`);
    device.pushErrorScope("validation");
    let encoder = device.createCommandEncoder();
    let pass = null;
    const endPass = () => {
      if (pass) pass.end();
      pass = null;
    };
    let dispatch = 0;
    for (const c of plan.commands) {
      switch (c.op) {
        case "dispatch":
          pass ??= encoder.beginComputePass();
          pass.setPipeline(this.pipelines[c.pipeline]);
          pass.setBindGroup(0, this.bindGroups[dispatch++]);
          pass.dispatchWorkgroups(c.groups[0], c.groups[1], c.groups[2]);
          break;
        case "copy":
          endPass();
          encoder.copyBufferToBuffer(this.buffers[c.src], c.src_offset, this.buffers[c.dst], c.dst_offset, c.size);
          break;
        case "clear":
          endPass();
          encoder.clearBuffer(this.buffers[c.buffer], 0, c.size);
          break;
        case "write": {
          // A queue write lands before work submitted after it: submit what came before.
          endPass();
          queue.submit([encoder.finish()]);
          encoder = device.createCommandEncoder();
          if (c.input !== undefined && c.input !== null) {
            queue.writeBuffer(this.buffers[c.buffer], 0, inputs[c.input]);
          } else {
            queue.writeBuffer(this.buffers[c.buffer], 0, this.weights, c.data[0], c.data[1]);
          }
          break;
        }
        default:
          throw new AsnaError(`plan: unknown command "${c.op}"`);
      }
    }
    endPass();
    plan.outputs.forEach((o, i) => encoder.copyBufferToBuffer(this.buffers[o.buffer], 0, this.staging[i], 0, this.staging[i].size));
    queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    if (error) throw new AsnaError(`GPU error: ${error.message}`);
    const out = {};
    await Promise.all(
      plan.outputs.map(async (o, i) => {
        await this.staging[i].mapAsync(GPUMapMode.READ);
        out[o.name] = this.staging[i].getMappedRange(0, this.staging[i].size).slice(0, o.bytes);
        this.staging[i].unmap();
      }),
    );
    if (this.lost) throw new AsnaError(`GPU device lost: ${this.lost}`);
    return out;
  }

  /** The label-scale score of a standardised one. */
  fromStandard(z) {
    const s = this.plan.scale;
    return (s.higher_is_better ? z : -z) * s.std + s.mean;
  }

  /**
   * Scores a pair: { score, windows, width, height, map (Float32Array or null),
   * milliseconds }. Options: map (default true), onProgress({ stage, done, total, message }).
   */
  async score(reference, distorted, options = {}) {
    const progress = options.onProgress ?? (() => {});
    const wantMap = options.map ?? true;
    const [r, d] = await Promise.all([readImage(reference, "reference"), readImage(distorted, "distorted")]);
    return this.scoreDecoded(r, d, { map: wantMap, onProgress: progress });
  }

  /** `score` for images already decoded by `readImage`. */
  async scoreDecoded(r, d, { map: wantMap = true, onProgress: progress = () => {} } = {}) {
    const size = this.window;
    const problem = pairProblem(r, d, size);
    if (problem) throw new AsnaError(problem);
    const started = performance.now();
    const { width, height } = r;
    const origins = windows(width, height, size);
    const batch = this.plan.batch;
    const input = this.plan.inputs.find((p) => p.name === "pixels");
    const pixels = new Uint8Array(input.bytes);
    const crop = size * size * 3;
    const diffPort = this.plan.outputs.find((p) => p.name === "feature_diff");
    const channels = diffPort.shape[3];
    const acc = wantMap ? new Float32Array(width * height) : null;
    const count = wantMap ? new Float32Array(width * height) : null;
    let sum = 0;
    for (let start = 0; start < origins.length; start += batch) {
      const group = origins.slice(start, start + batch);
      progress({ stage: "score", done: start, total: origins.length, message: `scoring window ${start + 1}/${origins.length}` });
      // Unused slots of the last batch repeat its first window; their outputs are ignored.
      for (let k = 0; k < batch; k++) {
        const [x, y] = group[Math.min(k, group.length - 1)];
        for (let row = 0; row < size; row++) {
          const from = ((y + row) * width + x) * 3;
          pixels.set(r.rgb.subarray(from, from + size * 3), k * crop + row * size * 3);
          pixels.set(d.rgb.subarray(from, from + size * 3), (batch + k) * crop + row * size * 3);
        }
      }
      const out = await this.run({ pixels });
      const z = new Float32Array(out.score);
      const diff = wantMap ? new Float32Array(out.feature_diff) : null;
      group.forEach(([x, y], k) => {
        if (!Number.isFinite(z[k])) throw new AsnaError("the model produced a non-finite score (corrupt weights?)");
        sum += this.fromStandard(z[k]);
        if (!wantMap) return;
        const base = k * size * size * channels;
        for (let yy = 0; yy < size; yy++) {
          for (let xx = 0; xx < size; xx++) {
            const at = base + (yy * size + xx) * channels;
            let s = 0;
            for (let c = 0; c < channels; c++) s = Math.fround(s + diff[at + c]);
            const o = (y + yy) * width + x + xx;
            acc[o] += Math.fround(s / channels);
            count[o] += 1;
          }
        }
      });
    }
    progress({ stage: "score", done: origins.length, total: origins.length, message: "done" });
    let map = null;
    if (wantMap) {
      map = acc;
      for (let i = 0; i < map.length; i++) map[i] /= count[i];
    }
    return {
      score: sum / origins.length,
      windows: origins.length,
      width,
      height,
      map,
      milliseconds: performance.now() - started,
    };
  }

  destroy() {
    this.device.destroy();
  }
}

// ---------------------------------------------------------------------------------------
// Drawing the quality map as `asna score --map` does: the map normalised to its range, in
// viridis, laid at 55% over a greyscale copy of the distorted image.

const VIRIDIS16 = [
  [68, 1, 84], [72, 26, 108], [71, 47, 125], [65, 68, 135], [57, 86, 140], [49, 104, 142],
  [42, 120, 142], [35, 136, 142], [31, 152, 139], [34, 168, 132], [53, 183, 121],
  [84, 197, 104], [122, 209, 81], [165, 219, 54], [210, 226, 27], [253, 231, 37],
];
const MAP_ALPHA = 0.55;

export function colormap(t) {
  t = Number.isNaN(t) ? 0 : Math.min(Math.max(t, 0), 1);
  const f = t * 15;
  const i = Math.min(Math.floor(f), 14);
  const u = f - i;
  const a = VIRIDIS16[i];
  const b = VIRIDIS16[i + 1];
  return [0, 1, 2].map((k) => a[k] + u * (b[k] - a[k]));
}

/** The quality map of `result` over `image` (from readImage) as ImageData. */
export function qualityMapImage(result, image) {
  const { width, height, map } = result;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of map) {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  const out = new ImageData(width, height);
  for (let p = 0; p < width * height; p++) {
    const i = p * 3;
    const grey = 0.299 * image.rgb[i] + 0.587 * image.rgb[i + 1] + 0.114 * image.rgb[i + 2];
    const v = map[p];
    const clampRound = (x) => Math.min(Math.max(Math.round(x), 0), 255);
    let rgb;
    if (Number.isFinite(v)) {
      const c = colormap(hi > lo ? (v - lo) / (hi - lo) : 0.5);
      rgb = c.map((ck) => clampRound(MAP_ALPHA * ck + (1 - MAP_ALPHA) * grey));
    } else {
      rgb = [clampRound(grey), clampRound(grey), clampRound(grey)];
    }
    out.data.set([rgb[0], rgb[1], rgb[2], 255], p * 4);
  }
  return out;
}
