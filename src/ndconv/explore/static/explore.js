// ndconv explore: the page. Every output comes from the server (ndconv itself);
// this script only draws what it answers and sends what the controls say.
"use strict";

const $ = (id) => document.getElementById(id);

// 1-D and 3-D presets (the bank of ndconv.kernels is 2-D and comes from /api/kernels).
const PRESETS = {
  "1d": {
    "gaussian [1,4,6,4,1]/16": [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16],
    "box 9": Array(9).fill(1 / 9),
    "diff [1,-1]": [1, -1],
    "slope [-1,0,1]": [-1, 0, 1],
    "second difference [1,-2,1]": [1, -2, 1],
  },
  "3d": {
    "box 3x3x3": cube(3, 1 / 27),
    "laplacian (7-point)": laplacian3(),
    "diff along axis 0": [[[1]], [[-1]]],
    "identity": [[[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
                 [[0, 0, 0], [0, 0, 0], [0, 0, 0]]],
  },
};

function cube(n, v) {
  return Array.from({ length: n }, () => Array.from({ length: n }, () => Array(n).fill(v)));
}

function laplacian3() {
  const k = cube(3, 0);
  k[1][1][1] = -6;
  k[0][1][1] = k[2][1][1] = k[1][0][1] = k[1][2][1] = k[1][1][0] = k[1][1][2] = 1;
  return k;
}

const state = {
  mode: "2d",
  bank: [],
  photo: null,          // image id
  inImage: null,        // HTMLImageElement of the input photo
  outImage: null,       // HTMLImageElement of the filtered photo
  outShape: null,
  picked: null,         // output index clicked
  sources: [],          // input indices of the picked element's window
  signal: null,         // ECG samples
  volume: null,         // {x, shape}
  y: null, yShape: null, // 1-D / 3-D output
  seq: 0,
};

// --- talking to the server ------------------------------------------------

async function call(method, path, body, raw) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.body = raw ? body : JSON.stringify(body);
    opts.headers["Content-Type"] = raw ? "application/octet-stream" : "application/json";
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(data.error || `${r.status}`);
  return data;
}

function showError(message) {
  const e = $("error");
  e.textContent = message || "";
  e.hidden = !message;
}

function setStatus(text) { $("status").textContent = text; }

// --- the controls -----------------------------------------------------------

function padding() {
  const t = $("padding").value.trim().toLowerCase();
  if (["same", "valid", "full"].includes(t)) return t;
  const parts = t.split(/[,\s]+/).filter(Boolean);
  const ints = parts.map(Number);
  if (!parts.length || ints.some((v) => !Number.isInteger(v))) return t; // the server says why
  return ints.length === 1 ? ints[0] : ints;
}

function intField(id) {
  const v = Number($(id).value);
  return Number.isInteger(v) ? v : $(id).value;
}

function convFields() {
  return { stride: intField("stride"), padding: padding(), dilation: intField("dilation"),
           padding_mode: $("padding-mode").value };
}

function kernelValue() {
  // A bank preset goes by name (the server builds it); anything typed goes as values.
  const sel = $("kernel").value;
  if (state.mode === "2d" && sel !== "custom") {
    const arg = $("kernel-arg").value.trim();
    return arg && bankEntry(sel).takes_arg ? `${sel}:${arg}` : sel;
  }
  try {
    return JSON.parse($("kernel-text").value);
  } catch (err) {
    throw new Error(`kernel values: not JSON (${err.message}); type a nested list like [[0,1],[2,3]]`);
  }
}

function bankEntry(name) { return state.bank.find((k) => k.name === name) || {}; }

function fillKernelSelect() {
  const sel = $("kernel");
  sel.innerHTML = "";
  const names = state.mode === "2d" ? state.bank.map((k) => k.name) : Object.keys(PRESETS[state.mode]);
  for (const n of names.concat(["custom"])) {
    const o = document.createElement("option");
    o.value = o.textContent = n;
    sel.appendChild(o);
  }
  sel.value = state.mode === "2d" ? "edge" : names[0];
  onKernelPreset();
}

function formatKernel(k) {
  const fmt = (v) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6))));
  const rows = (a, depth) => (Array.isArray(a[0])
    ? "[" + a.map((r) => rows(r, depth + 1)).join(",\n" + " ".repeat(depth + 1)) + "]"
    : "[" + a.map(fmt).join(", ") + "]");
  return rows(k, 0);
}

function onKernelPreset() {
  const sel = $("kernel").value;
  let desc = "";
  if (sel === "custom") {
    desc = "type the kernel's values as JSON";
  } else if (state.mode === "2d") {
    const e = bankEntry(sel);
    desc = `ndconv.kernels.get("${sel}"): ${e.description}`;
    $("kernel-text").value = formatKernel(e.kernel);
  } else {
    $("kernel-text").value = formatKernel(PRESETS[state.mode][sel]);
  }
  $("kernel-arg-label").hidden = !(state.mode === "2d" && bankEntry(sel).takes_arg);
  $("kernel-desc").textContent = desc;
  update();
}

// --- drawing ----------------------------------------------------------------------

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error("the image did not load"));
    im.src = src;
  });
}

function drawImage(canvas, im) {
  canvas.classList.remove("plot");
  canvas.width = im.naturalWidth;
  canvas.height = im.naturalHeight;
  canvas.getContext("2d").drawImage(im, 0, 0);
  sizeCanvas(canvas);
}

// Show small arrays enlarged (pixelated), large ones to fit the panel.
function sizeCanvas(canvas) {
  const box = canvas.parentElement.clientWidth || 560;
  const scale = Math.min(box / canvas.width, 420 / canvas.height, 16);
  canvas.style.width = `${Math.floor(canvas.width * scale)}px`;
  canvas.style.height = `${Math.floor(canvas.height * scale)}px`;
}

// Mark the cells of a window (input) or the picked cell (output): filled cells,
// and a frame around them that stays visible when a large image is shown small.
function highlight(canvas, cells, fill) {
  const g = canvas.getContext("2d");
  const px = canvas.width / canvas.getBoundingClientRect().width; // canvas px per CSS px
  g.fillStyle = fill || "rgba(255, 45, 85, 0.45)";
  let top = Infinity, left = Infinity, bottom = -Infinity, right = -Infinity;
  for (const c of cells) {
    if (!c) continue;
    const [i, j] = c;
    g.fillRect(j, i, 1, 1);
    top = Math.min(top, i); left = Math.min(left, j);
    bottom = Math.max(bottom, i + 1); right = Math.max(right, j + 1);
  }
  if (top === Infinity) return;
  g.lineWidth = 2.5 * px;
  g.strokeStyle = "#ff2d55";
  const m = 4 * px; // clear of the cells, so they stay visible
  g.strokeRect(left - m, top - m, right - left + 2 * m, bottom - top + 2 * m);
}

function canvasIndex(canvas, ev) {
  const r = canvas.getBoundingClientRect();
  const j = Math.floor(((ev.clientX - r.left) / r.width) * canvas.width);
  const i = Math.floor(((ev.clientY - r.top) / r.height) * canvas.height);
  return [Math.min(Math.max(i, 0), canvas.height - 1), Math.min(Math.max(j, 0), canvas.width - 1)];
}

function greyCanvas(canvas, plane, lo, hi) {
  canvas.classList.remove("plot");
  const h = plane.length, w = plane[0].length;
  canvas.width = w;
  canvas.height = h;
  const g = canvas.getContext("2d");
  const img = g.createImageData(w, h);
  const span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const v = Math.round((255 * (plane[i][j] - lo)) / span);
      const p = 4 * (i * w + j);
      img.data[p] = img.data[p + 1] = img.data[p + 2] = Math.max(0, Math.min(255, v));
      img.data[p + 3] = 255;
    }
  }
  g.putImageData(img, 0, 0);
  sizeCanvas(canvas);
}

// The 1st and 99th percentiles: a few very bright voxels would leave the rest black.
function robustRange(flat) {
  const a = Float64Array.from(flat).sort();
  const at = (q) => a[Math.min(a.length - 1, Math.floor(q * (a.length - 1)))];
  return [at(0.01), at(0.99)];
}

function minMax(flat) {
  let lo = Infinity, hi = -Infinity;
  for (const v of flat) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

function plot(canvas, ys, marks, title) {
  // Drawn at the panel's size times the screen's pixel ratio: sharp lines and text.
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(300, (canvas.parentElement.clientWidth || 900) - 14), h = 250;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.classList.add("plot");
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  const [lo, hi] = minMax(ys);
  const pad = 28;
  const X = (i) => pad + ((w - 2 * pad) * i) / Math.max(1, ys.length - 1);
  const Y = (v) => h - pad - ((h - 2 * pad) * (v - lo)) / (hi > lo ? hi - lo : 1);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, w, h);
  g.strokeStyle = "#ccc";
  g.strokeRect(pad, pad, w - 2 * pad, h - 2 * pad);
  g.fillStyle = "#555";
  g.font = "13px sans-serif";
  g.fillText(`${title}  (min ${lo.toPrecision(4)}, max ${hi.toPrecision(4)}; ${ys.length} samples)`, pad, 18);
  // Ticks along the samples: a round step giving about eight labels.
  const step = [1, 2, 5, 10, 20, 50, 100, 128, 200, 256, 500, 1000].find((t) => ys.length / t <= 9) || 1000;
  g.textAlign = "center";
  for (let i = 0; i < ys.length; i += step) {
    g.fillRect(X(i), h - pad, 1, 4);
    g.fillText(String(i), X(i), h - pad + 16);
  }
  g.textAlign = "left";
  g.strokeStyle = "#1f5fbf";
  g.lineWidth = 1.3;
  g.beginPath();
  ys.forEach((v, i) => (i ? g.lineTo(X(i), Y(v)) : g.moveTo(X(i), Y(v))));
  g.stroke();
  g.fillStyle = "#ff2d55";
  for (const i of marks) {
    if (i === null || i === undefined) continue;
    g.beginPath();
    g.arc(X(i), Y(ys[i]), 4, 0, 2 * Math.PI);
    g.fill();
  }
  canvas.plotX = { pad, w, n: ys.length };
}

// --- the modes ----------------------------------------------------------------------

let timer = null;
function update() {
  clearTimeout(timer);
  timer = setTimeout(run, 120);
}

async function run() {
  const seq = ++state.seq;
  showError("");
  try {
    if (state.mode === "2d") await run2d(seq);
    else if (state.mode === "1d") await run1d(seq);
    else await run3d(seq);
  } catch (err) {
    if (seq === state.seq) showError(err.message);
  }
}

function clearReadout() {
  state.picked = null;
  state.sources = [];
  $("picked").textContent = "an output element (click one)";
  $("sum").textContent = "";
  $("where").textContent = "";
}

async function run2d(seq) {
  const grey = $("grey").checked;
  const src = `/api/image/${encodeURIComponent(state.photo)}${grey ? "?grey=1" : ""}`;
  const body = { image: state.photo, kernel: kernelValue(), grey, range: $("range").value,
                 ...convFields() };
  setStatus("computing...");
  const [inImage, r] = await Promise.all([loadImage(src), call("POST", "/api/filter", body)]);
  if (seq !== state.seq) return;
  state.inImage = inImage;
  state.outImage = await loadImage(r.png);
  if (seq !== state.seq) return;
  if ($("kernel").value !== "custom") $("kernel-text").value = formatKernel(r.kernel);
  state.outShape = r.shape;
  drawImage($("in-canvas"), state.inImage);
  drawImage($("out-canvas"), state.outImage);
  $("in-shape").textContent = `${r.input_shape[0]} x ${r.input_shape[1]}, ${r.channels} channel(s)`;
  $("out-shape").textContent = `${r.shape[0]} x ${r.shape[1]} (padding ${JSON.stringify(r.padding)}, ` +
    `stride ${r.stride.join(",")}, dilation ${r.dilation.join(",")})`;
  setStatus(`ndconv.images.filter_image: ${r.kernel.length}x${r.kernel[0].length} kernel, ` +
    `range ${body.range}`);
  const keep = state.picked;
  clearReadout();
  if (keep && keep[0] < r.shape[0] && keep[1] < r.shape[1]) await pick2d(keep);
}

async function pick2d(index) {
  const grey = $("grey").checked;
  const body = { image: state.photo, kernel: kernelValue(), grey, range: $("range").value,
                 index, ...convFields() };
  const r = await call("POST", "/api/pixel", body);
  state.picked = r.index;
  state.sources = r.sources;
  $("picked").textContent = `output pixel (${r.index.join(", ")})`;
  $("sum").textContent = r.channels.map((c) =>
    `${c.channel}: ${c.line}` + `   shown as ${c.shown} (range ${r.range})`).join("\n");
  $("where").textContent = `= ${r.where}`;
  drawImage($("in-canvas"), state.inImage);
  drawImage($("out-canvas"), state.outImage);
  highlight($("in-canvas"), r.sources);
  highlight($("out-canvas"), [r.index], "rgba(255, 45, 85, 0.8)");
}

async function run1d(seq) {
  if (!state.signal) state.signal = (await call("GET", "/api/signal")).x;
  const r = await call("POST", "/api/conv", { x: state.signal, kernel: kernelValue(), ...convFields() });
  if (seq !== state.seq) return;
  state.y = r.y;
  $("in-shape").textContent = `${state.signal.length} samples at 360 Hz (pywt.data.ecg())`;
  $("out-shape").textContent = `${r.shape[0]} samples (padding ${JSON.stringify(r.padding)})`;
  setStatus("ndconv.conv on one channel, 1-D");
  const keep = state.picked;
  clearReadout();
  plot($("in-canvas"), state.signal, [], "ECG");
  plot($("out-canvas"), state.y, [], "ndconv output");
  if (keep && keep[0] < r.shape[0]) await pickNd(keep);
}

async function run3d(seq) {
  if (!state.volume) {
    state.volume = await call("GET", "/api/volume");
    $("slice").value = String(Math.floor(state.volume.shape[Number($("axis").value)] / 2));
  }
  const r = await call("POST", "/api/conv", { x: state.volume.x, kernel: kernelValue(), ...convFields() });
  if (seq !== state.seq) return;
  state.y = r.y;
  state.yShape = r.shape;
  state.ranges = null;
  $("in-shape").textContent = `${state.volume.shape.join(" x ")} (nibabel anatomical.nii)`;
  $("out-shape").textContent = `${r.shape.join(" x ")} (padding ${JSON.stringify(r.padding)})`;
  setStatus("ndconv.conv on one channel, 3-D");
  const keep = state.picked;
  clearReadout();
  draw3d();
  if (keep && keep.every((v, d) => v < r.shape[d])) await pickNd(keep);
}

function slicePlane(vol, shape, axis, s) {
  // The 2-D plane of a nested 3-D list at index s along axis.
  const dims = [0, 1, 2].filter((d) => d !== axis);
  const out = [];
  for (let i = 0; i < shape[dims[0]]; i++) {
    const row = [];
    for (let j = 0; j < shape[dims[1]]; j++) {
      const idx = [0, 0, 0];
      idx[axis] = s; idx[dims[0]] = i; idx[dims[1]] = j;
      row.push(vol[idx[0]][idx[1]][idx[2]]);
    }
    out.push(row);
  }
  return { plane: out, dims };
}

function draw3d() {
  const axis = Number($("axis").value);
  const slider = $("slice");
  const n = Math.min(state.volume.shape[axis], state.yShape[axis]);
  slider.max = String(n - 1);
  if (Number(slider.value) > n - 1) slider.value = String(Math.floor((n - 1) / 2));
  const s = Number(slider.value);
  $("slice-value").textContent = `${s} of 0..${n - 1}`;
  if (!state.ranges) {
    state.ranges = { in: robustRange(state.volume.x.flat(2)), out: robustRange(state.y.flat(2)) };
  }
  const [ilo, ihi] = state.ranges.in;
  // "shared": the output in the input's grey scale (a blur looks like a blur);
  // "own": its own, for outputs on another scale (a Laplacian's signed values).
  const [olo, ohi] = $("scale").value === "shared" ? state.ranges.in : state.ranges.out;
  const f = (v) => Number(v.toPrecision(4));
  $("scale-note").textContent = `black..white: input ${f(ilo)}..${f(ihi)}, output ${f(olo)}..${f(ohi)} ` +
    "(1st..99th percentiles)";
  const a = slicePlane(state.volume.x, state.volume.shape, axis, s);
  const b = slicePlane(state.y, state.yShape, axis, s);
  greyCanvas($("in-canvas"), a.plane, ilo, ihi);
  greyCanvas($("out-canvas"), b.plane, olo, ohi);
  if (state.picked && state.picked[axis] === s) {
    const to2 = (idx) => (idx && idx[axis] === s ? [idx[b.dims[0]], idx[b.dims[1]]] : null);
    highlight($("in-canvas"), state.sources.map(to2));
    highlight($("out-canvas"), [to2(state.picked)], "rgba(255, 45, 85, 0.8)");
  }
}

async function pickNd(index) {
  const x = state.mode === "1d" ? state.signal : state.volume.x;
  const r = await call("POST", "/api/explain", { x, kernel: kernelValue(), index, ...convFields() });
  state.picked = r.index;
  state.sources = r.terms.map((t) => t.source);
  $("picked").textContent = `y[${r.index.join(", ")}]`;
  $("sum").textContent = r.line;
  $("where").textContent = `= ${r.where}`;
  if (state.mode === "1d") {
    plot($("in-canvas"), state.signal, state.sources.map((s) => (s ? s[0] : null)), "ECG");
    plot($("out-canvas"), state.y, [r.index[0]], "ndconv output");
  } else {
    draw3d();
  }
}

function plotIndex(canvas, ev) {
  const r = canvas.getBoundingClientRect();
  const { pad, w, n } = canvas.plotX;
  const x = ((ev.clientX - r.left) / r.width) * w;
  return Math.min(n - 1, Math.max(0, Math.round(((x - pad) / (w - 2 * pad)) * (n - 1))));
}

async function onOutputClick(ev) {
  showError("");
  try {
    const canvas = $("out-canvas");
    if (state.mode === "2d") {
      if (state.outImage) await pick2d(canvasIndex(canvas, ev));
    } else if (state.mode === "1d") {
      if (state.y) await pickNd([plotIndex(canvas, ev)]);
    } else if (state.y) {
      const axis = Number($("axis").value);
      const [i, j] = canvasIndex(canvas, ev);
      const dims = [0, 1, 2].filter((d) => d !== axis);
      const idx = [0, 0, 0];
      idx[axis] = Number($("slice").value); idx[dims[0]] = i; idx[dims[1]] = j;
      await pickNd(idx);
    }
  } catch (err) {
    showError(err.message);
  }
}

function setMode(mode) {
  state.mode = mode;
  document.body.dataset.mode = mode;
  for (const b of document.querySelectorAll(".tabs button")) {
    b.setAttribute("aria-selected", String(b.dataset.mode === mode));
  }
  $("padding").value = "same";
  clearReadout();
  fillKernelSelect();
}

async function onUpload() {
  const file = $("upload").files[0];
  if (!file) return;
  showError("");
  try {
    const r = await call("POST", "/api/upload", await file.arrayBuffer(), true);
    const o = document.createElement("option");
    o.value = r.id;
    o.textContent = `${file.name} (${r.width}x${r.height})`;
    $("photo").appendChild(o);
    $("photo").value = r.id;
    state.photo = r.id;
    update();
  } catch (err) {
    showError(`upload: ${err.message}`);
  }
}

async function init() {
  try {
    const [bank, photos] = await Promise.all([call("GET", "/api/kernels"), call("GET", "/api/photos")]);
    state.bank = bank.kernels;
    for (const p of photos.photos) {
      const o = document.createElement("option");
      o.value = p.id;
      o.textContent = p.id;
      o.title = p.title;
      $("photo").appendChild(o);
    }
    state.photo = photos.photos[0].id;
  } catch (err) {
    showError(err.message);
    return;
  }
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => setMode(b.dataset.mode));
  }
  $("photo").addEventListener("change", () => { state.photo = $("photo").value; clearReadout(); update(); });
  $("upload").addEventListener("change", onUpload);
  $("kernel").addEventListener("change", onKernelPreset);
  $("kernel-text").addEventListener("input", () => { $("kernel").value = "custom"; $("kernel-desc").textContent = "custom values"; update(); });
  for (const id of ["kernel-arg", "stride", "padding", "dilation", "padding-mode", "range", "grey"]) {
    $(id).addEventListener("input", update);
    $(id).addEventListener("change", update);
  }
  $("axis").addEventListener("change", () => {
    if (!state.y) return;
    $("slice").value = String(Math.floor(state.yShape[Number($("axis").value)] / 2));
    draw3d();
  });
  $("slice").addEventListener("input", () => { if (state.y) draw3d(); });
  $("scale").addEventListener("change", () => { if (state.y) draw3d(); });
  $("out-canvas").addEventListener("click", onOutputClick);
  setMode("2d");
}

document.addEventListener("DOMContentLoaded", init);
