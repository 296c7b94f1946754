// fkd live mode: the webcam's keypoints computed in the visitor's browser, at camera speed.
//
// The same way through a frame as fkd.stream.Tracker on the server, with the exported model
// (python -m fkd.export: weights/onnx/<model>.onnx + .onnx.json) run by onnxruntime-web and the faces found
// by MediaPipe's BlazeFace (@mediapipe/tasks-vision, weights/face_detection_short_range.tflite):
//   faces followed from the last frame's points (Landmarker.track: crop_of, a re-crop when they moved
//   off it, the mirrored pass for doubted faces, dropped below min_confidence); the detector on the
//   first frame, when every face is lost, and every detect_every_s for newcomers (Landmarker.predict
//   on its detections: the crop the detector's six points place, else the calibrated one or the
//   locator's, levelled / re-cropped passes, mirror); One-Euro smoothing
//   (fkd.smoothing.PointSmoother); drawing as fkd.viz.draw_faces.
// Not done here: the search of turned copies (a head lying down); the server mode has it.
// Every file comes from the app (static/vendor/, weights/): nothing from a CDN, single-threaded wasm,
// no cross-origin isolation needed. The test reads window.fkdLive (last, fps, ms, record()).

const round = Math.round;

// -- geometry (fkd/geometry.py) ----------------------------------------------------------------
// a 2×3 affine is [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f
function landmarkBox(p) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const [x, y] of p) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
  return [x0, y0, x1, y1];
}
const boxSide = (b) => Math.max(b[2] - b[0], b[3] - b[1]);
const apply = (M, p) => p.map(([x, y]) => [M[0] * x + M[1] * y + M[2], M[3] * x + M[4] * y + M[5]]);
function invert(M) {
  const det = M[0] * M[4] - M[1] * M[3];
  const a = M[4] / det, b = -M[1] / det, d = -M[3] / det, e = M[0] / det;
  return [a, b, -(a * M[2] + b * M[5]), d, e, -(d * M[2] + e * M[5])];
}
const compose = (A, B) => [  // B, then A
  A[0] * B[0] + A[1] * B[3], A[0] * B[1] + A[1] * B[4], A[0] * B[2] + A[1] * B[5] + A[2],
  A[3] * B[0] + A[4] * B[3], A[3] * B[1] + A[4] * B[4], A[3] * B[2] + A[4] * B[5] + A[5]];
function cropMatrix(box, spec, [W, H]) {
  const side = Math.max(boxSide(box), 1);
  const cx = (box[0] + box[2]) / 2 + spec.dx * side, cy = (box[1] + box[3]) / 2 + spec.dy * side;
  const sx = W / (spec.w * side), sy = H / (spec.h * side);
  return [sx, 0, (W - 1) / 2 - sx * cx, 0, sy, (H - 1) / 2 - sy * cy];
}
function eyeRoll(p, [i, j]) {
  return Math.atan2(p[j][1] - p[i][1], p[j][0] - p[i][0]) * 180 / Math.PI;
}
function turn([cx, cy], degrees) {  // cv2.getRotationMatrix2D(center, degrees, 1)
  const a = Math.cos(degrees * Math.PI / 180), b = Math.sin(degrees * Math.PI / 180);
  return [a, b, (1 - a) * cx - b * cy, -b, a, b * cx + (1 - a) * cy];
}
function uprightCropMatrix(p, eyes, spec, size) {
  const b = landmarkBox(p);
  const level = turn([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], eyeRoll(p, eyes));
  return compose(cropMatrix(landmarkBox(apply(level, p)), spec, size), level);
}
function cropShift(M, M2, [w, h]) {  // Landmarker's crop_shift: the largest corner move, per input side
  const C = [[0, 0], [w, 0], [0, h], [w, h]];
  const moved = apply(compose(M2, invert(M)), C);
  let m = 0;
  moved.forEach(([x, y], k) => { m = Math.max(m, Math.abs(x - C[k][0]), Math.abs(y - C[k][1])); });
  return m / Math.max(w, h);
}
const mean = (p) => { let x = 0, y = 0; for (const q of p) { x += q[0]; y += q[1]; } return [x / p.length, y / p.length]; };
const wrap = (d) => ((d + 180) % 360 + 360) % 360 - 180;

// -- the crop, as fkd.geometry.warp (shrinking past 2×: the crop's region halved f = 2, 4, 8 ... times, as
// cv2.resize INTER_AREA) and cv2.warpAffine (bilinear, 1/32-pixel positions, border replicated), then
// pixel / 255 - 0.5 in (1, C, H, W)
function halve(src, sw, stride, x0, y0, w, h) {  // the w×h region at (x0, y0) ×2 halved: 2×2 means, rounded, RGB
  const out = new Uint8ClampedArray(w * h * 3);
  for (let v = 0; v < h; v++) for (let u = 0; u < w; u++) {
    const a = ((y0 + 2 * v) * sw + x0 + 2 * u) * stride, b = a + sw * stride, o = (v * w + u) * 3;
    for (let c = 0; c < 3; c++) out[o + c] = (src[a + c] + src[a + stride + c] + src[b + c] + src[b + stride + c] + 2) >> 2;
  }
  return out;
}

function cut(frame, M, [W, H], channels, out) {
  let src = frame.data, sw = frame.width, sh = frame.height, stride = 4;
  const scale = Math.sqrt(Math.abs(M[0] * M[4] - M[1] * M[3]));
  if (scale < 0.5) {
    const f = 2 ** Math.max(0, Math.ceil(Math.log2(0.5 / scale) - 1e-9)), margin = 2 * f + 2, Mi = invert(M);
    const C = apply(Mi, [[-0.5, -0.5], [W - 0.5, -0.5], [-0.5, H - 0.5], [W - 0.5, H - 0.5]]);
    let x0 = Math.max(0, Math.floor(Math.min(...C.map((c) => c[0])) - margin));
    let y0 = Math.max(0, Math.floor(Math.min(...C.map((c) => c[1])) - margin));
    const x1 = Math.min(sw, Math.ceil(Math.max(...C.map((c) => c[0])) + margin) + 1);
    const y1 = Math.min(sh, Math.ceil(Math.max(...C.map((c) => c[1])) + margin) + 1);
    x0 -= x0 % f; y0 -= y0 % f;
    const w = Math.floor((x1 - x0) / f), h = Math.floor((y1 - y0) / f);
    if (w >= 1 && h >= 1) {
      let s = src, ss = sw, st = stride, ox = x0, oy = y0;
      for (let k = f / 2; k >= 1; k /= 2) {  // the region (w·f × h·f) halved until it is w × h
        s = halve(s, ss, st, ox, oy, w * k, h * k);
        ss = w * k; st = 3; ox = 0; oy = 0;
      }
      // small-image pixel (u, v) is the mean of pixels f·u + x0 … f·u + x0 + f - 1
      M = compose(M, [f, 0, (f - 1) / 2 + x0, 0, f, (f - 1) / 2 + y0]);
      src = s; sw = w; sh = h; stride = 3;
    }
  }
  const Mi = invert(M), plane = W * H;
  for (let v = 0; v < H; v++) {
    for (let u = 0; u < W; u++) {
      const X = Math.floor((Mi[0] * u + Mi[1] * v + Mi[2]) * 32 + 0.5), Y = Math.floor((Mi[3] * u + Mi[4] * v + Mi[5]) * 32 + 0.5);
      const ix = X >> 5, iy = Y >> 5, fx = (X & 31) / 32, fy = (Y & 31) / 32;
      const xa = Math.min(Math.max(ix, 0), sw - 1), xb = Math.min(Math.max(ix + 1, 0), sw - 1);
      const ya = Math.min(Math.max(iy, 0), sh - 1), yb = Math.min(Math.max(iy + 1, 0), sh - 1);
      const k00 = (ya * sw + xa) * stride, k01 = (ya * sw + xb) * stride, k10 = (yb * sw + xa) * stride, k11 = (yb * sw + xb) * stride;
      const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
      const o = v * W + u;  // each channel rounded to uint8, as the warped patch is
      const r = round(src[k00] * w00 + src[k01] * w01 + src[k10] * w10 + src[k11] * w11);
      const g = round(src[k00 + 1] * w00 + src[k01 + 1] * w01 + src[k10 + 1] * w10 + src[k11 + 1] * w11);
      const b = round(src[k00 + 2] * w00 + src[k01 + 2] * w01 + src[k10 + 2] * w10 + src[k11 + 2] * w11);
      if (channels === 3) {
        out[o] = r / 255 - 0.5; out[plane + o] = g / 255 - 0.5; out[2 * plane + o] = b / 255 - 0.5;
      } else {  // OpenCV's RGB2GRAY weights
        out[o] = round(0.299 * r + 0.587 * g + 0.114 * b) / 255 - 0.5;
      }
    }
  }
  return out;
}

// -- the One-Euro filter and the per-face smoother (fkd/smoothing.py) --------------------------
const alpha = (cutoff, dt) => 1 / (1 + 1 / (2 * Math.PI * cutoff) / dt);
const strengthToCutoff = (s) => 30 * Math.pow(0.1 / 30, Math.min(Math.max(s, 0), 1));

class OneEuro {
  constructor(minCutoff, beta, dCutoff) { Object.assign(this, { minCutoff, beta, dCutoff, x: null }); }
  filter(x, t) {
    if (!this.x || this.x.length !== x.length) { this.x = x.slice(); this.dx = new Float64Array(x.length); this.t = t; return x.slice(); }
    const dt = t - this.t;
    if (dt <= 0) return this.x.slice();
    const ad = alpha(this.dCutoff, dt);
    for (let i = 0; i < x.length; i++) {
      this.dx[i] = ad * (x[i] - this.x[i]) / dt + (1 - ad) * this.dx[i];
      const a = alpha(this.minCutoff + this.beta * Math.abs(this.dx[i]), dt);
      this.x[i] = a * x[i] + (1 - a) * this.x[i];
    }
    this.t = t;
    return this.x.slice();
  }
}

class PointSmoother {
  constructor(minCutoff, beta = 0.7, dCutoff = 1.0, maxJump = 0.5) { Object.assign(this, { minCutoff, beta, dCutoff, maxJump, tracks: [] }); }
  reset() { this.tracks = []; }
  configure(minCutoff) { this.minCutoff = minCutoff; for (const t of this.tracks) t.filt.minCutoff = minCutoff; }
  apply(faces, t) {
    const free = this.tracks.slice(), next = [], out = [];
    for (const f of faces) {
      const side = Math.max(boxSide(f.box), 1), c = [(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2];
      const dist = (tr) => Math.hypot(tr.centre[0] - c[0], tr.centre[1] - c[1]);
      let best = null;
      for (const tr of free) if (!best || dist(tr) < dist(best)) best = tr;
      let filt, unit;
      if (best && dist(best) <= this.maxJump * side) { free.splice(free.indexOf(best), 1); ({ filt, unit } = best); }
      else { filt = new OneEuro(this.minCutoff, this.beta, this.dCutoff); unit = side; }
      const state = Float64Array.from([...f.box, ...f.points.flat()], (v) => v / unit);
      const sm = filt.filter(state, t).map((v) => v * unit);
      next.push({ centre: c, filt, unit });
      const pts = [];
      for (let i = 4; i < sm.length; i += 2) pts.push([sm[i], sm[i + 1]]);
      out.push({ ...f, box: Array.from(sm.slice(0, 4)), points: pts });
    }
    this.tracks = next;
    return out;
  }
}

// -- the landmark model: Landmarker's read / settle / mirror / track, per face ----------------------
class Model {
  static async load(ort, g, settings) {  // g: {onnx, json, locator?: {onnx, json}}
    const [graph, card] = await Promise.all([fetchBytes(g.onnx), fetch(g.json).then((r) => r.json())]);
    const session = await ort.InferenceSession.create(graph, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    const model = new Model(ort, session, card, settings);
    await model.run(model.x);  // the first run sets the session up: not on a camera frame
    if (g.locator) model.locator = await Model.load(ort, g.locator, settings);
    return model;
  }

  constructor(ort, session, card, settings) {
    this.ort = ort; this.session = session; this.card = card; this.s = settings;
    const [, C, H, W] = card.input.shape;
    Object.assign(this, { C, size: [W, H], crop: card.crop, shift: card.label_shift, flip: card.flip_pairs, eyes: card.eye_corners });
    this.flipBelow = settings.flip_below ?? card.flip_below ?? 0.996;
    this.cal = card.detector_box_to_landmark_box;
    this.marksMap = settings.marks ? card.detector_points_to_landmark_box : null;
    this.x = new Float32Array(C * H * W);
    this.xf = new Float32Array(C * H * W);
    this.ms = 0;  // model time of the last frame
  }

  async run(x) {
    const t0 = performance.now();
    const out = await this.session.run({ [this.card.input.name]: new this.ort.Tensor("float32", x, [1, this.C, this.size[1], this.size[0]]) });
    this.ms += performance.now() - t0;
    const p = out.points.data, pts = [];
    for (let i = 0; i < p.length; i += 2) pts.push([p[i], p[i + 1]]);
    return [pts, out.confidence.data[0]];
  }

  toImage(M, pts) { return apply(invert(M), pts.map(([x, y]) => [x + this.shift[0], y + this.shift[1]])); }

  async read(frame, M) {  // one pass on the crop M: {M, points (image pixels), conf}
    cut(frame, M, this.size, this.C, this.x);
    const [p, conf] = await this.run(this.x);
    return { M, points: this.toImage(M, p), conf };
  }

  async mirror(r) {  // the flip test: averaged with the pass on the mirrored crop of r.M (x still holds it)
    const [W, H] = this.size;
    for (let c = 0; c < this.C; c++) for (let v = 0; v < H; v++) {
      const row = (c * H + v) * W;
      for (let u = 0; u < W; u++) this.xf[row + u] = this.x[row + W - 1 - u];
    }
    const [pf] = await this.run(this.xf);
    const back = this.toImage(r.M, this.flip.map((j) => [W - 1 - pf[j][0], pf[j][1]]));
    return { ...r, points: r.points.map(([x, y], i) => [(x + back[i][0]) / 2, (y + back[i][1]) / 2]) };
  }

  async maybeMirror(r, low) {  // flip_test "auto": the faces the model doubts, not those dropped
    // (this.x holds r's crop: r is always the last pass read)
    return this.flip.length > 1 && r.conf < this.flipBelow && r.conf >= low ? this.mirror(r) : r;
  }

  cropOf(p) {
    if (this.eyes && Math.abs(eyeRoll(p, this.eyes)) > this.s.level_above) return uprightCropMatrix(p, this.eyes, this.crop, this.size);
    return cropMatrix(landmarkBox(p), this.crop, this.size);
  }

  recrop(r, low, follow = false) {  // Landmarker.recrop: [the crop of r's points, whether both passes count], or null
    const above = follow ? this.s.follow_recrop_above : this.s.recrop_above;
    if (above == null || r.conf < low) return null;
    const M = this.cropOf(r.points), shift = cropShift(r.M, M, this.size);
    return shift > above ? [M, !follow && shift <= this.s.blend_within] : null;
  }

  async again(frame, r, re) {  // Landmarker.pass_again for one face re-cropped by `recrop`
    const next = await this.read(frame, re[0]);
    return re[1] ? blend(next, r) : next;
  }

  calibrated(b) {  // detector box -> the landmark box the models were trained on (fkd.calibration)
    const s = boxSide(b), cx = (b[0] + b[2]) / 2 + this.cal.dx * s, cy = (b[1] + b[3]) / 2 + this.cal.dy * s, h = this.cal.scale * s / 2;
    return [cx - h, cy - h, cx + h, cy + h];
  }

  markedCrop(box, marks) {  // Landmarker.marked_crops: the crop the detector's six points place, and its tilt
    const roll = eyeRoll(marks, [0, 1]), levelled = Math.abs(roll) > this.s.level_above ? roll : 0;
    const L = turn(mean(marks), levelled), p = apply(L, marks), c = mean(p.slice(0, 4)), s = boxSide(box);
    const f = [1, ...p.flatMap(([x, y]) => [(x - c[0]) / s, (y - c[1]) / s])];
    const [dx, dy, logSide] = this.marksMap.weights.map((w) => w.reduce((a, v, k) => a + v * f[k], 0));
    const cx = c[0] + dx * s, cy = c[1] + dy * s, h = Math.exp(logSide) * s / 2;
    return [compose(cropMatrix([cx - h, cy - h, cx + h, cy + h], this.crop, this.size), L), levelled];
  }

  async first(frame, box, low, marks) {  // the first pass on a detector box and its crop's tilt: on the crop its
    // points place (a face the model doubts there goes on as a box), else the locator's (Landmarker.locate)
    if (marks && this.marksMap && this.eyes) {
      const [M, levelled] = this.markedCrop(box, marks);
      const r = await this.read(frame, M);
      if (r.conf >= low) return [r, levelled];
    }
    if (!this.locator) return [await this.read(frame, cropMatrix(this.calibrated(box), this.crop, this.size)), 0];
    const l = await this.locator.read(frame, cropMatrix(this.locator.calibrated(box), this.locator.crop, this.locator.size));
    this.ms += this.locator.ms; this.locator.ms = 0;  // the frame's model time counts the locator's too
    return [l.conf < low ? null : await this.read(frame, cropMatrix(landmarkBox(l.points), this.crop, this.size)), 0];
  }

  async fromBox(frame, box, score, low, marks = null) {  // Landmarker.faces_in_boxes for one detector box: place, settle, mirror
    let [r, levelled] = await this.first(frame, box, low, marks);
    if (!r) return null;
    for (let k = 0; this.eyes && k < this.s.extra_passes; k++) {
      let M = null;
      if (Math.abs(wrap(eyeRoll(r.points, this.eyes) - levelled)) > this.s.level_above) {
        M = uprightCropMatrix(r.points, this.eyes, this.crop, this.size);
        levelled = eyeRoll(r.points, this.eyes);
        r = await this.read(frame, M);
      } else {
        const re = this.recrop(r, low);
        if (!re) break;
        r = await this.again(frame, r, re);
      }
    }
    if (r.conf < low) return null;
    r = await this.maybeMirror(r, low);
    return { box, score, points: r.points, confidence: r.conf };
  }

  async follow(frame, f) {  // Landmarker.track for one face: null when the model lost it
    const low = this.s.min_confidence;
    let r = await this.read(frame, this.cropOf(f.points));
    const re = this.recrop(r, low, true);
    if (re) r = await this.again(frame, r, re);
    if (r.conf < low) return null;
    r = await this.maybeMirror(r, low);
    const c0 = mean(f.points), c1 = mean(r.points);
    const k = boxSide(landmarkBox(r.points)) / Math.max(boxSide(landmarkBox(f.points)), 1e-6);
    const box = [0, 1, 2, 3].map((i) => (f.box[i] - c0[i % 2]) * k + c1[i % 2]);
    return { ...f, box, points: r.points, confidence: r.conf };
  }
}

function blend(r, before) {  // Landmarker.pass_again's blend: a re-crop's points are the mean of both passes'
  return { ...r, points: r.points.map(([x, y], i) => [(x + before.points[i][0]) / 2, (y + before.points[i][1]) / 2]) };
}
function faceSide(f) { return boxSide(landmarkBox(f.points)); }
function near(box, f) {  // Landmarker's near(): a detector box on a followed face
  const c = mean(f.points);
  return Math.hypot((box[0] + box[2]) / 2 - c[0], (box[1] + box[3]) / 2 - c[1]) <= faceSide(f) / 2;
}
function distinct(faces) {  // one face per place (the surest), then left to right
  const kept = [];
  for (const f of faces.slice().sort((a, b) => b.confidence - a.confidence || b.score - a.score)) {
    const c = mean(f.points);
    if (kept.every((k) => { const d = mean(k.points); return Math.hypot(c[0] - d[0], c[1] - d[1]) > faceSide(f) / 2; })) kept.push(f);
  }
  return kept.sort((a, b) => a.box[0] - b.box[0]);
}

// -- drawing (fkd.viz.draw_faces: box in the face's colour, white contours, green dots) -----------
function draw(ctx, faces, contours, colors) {
  const { width, height } = ctx.canvas;
  ctx.clearRect(0, 0, width, height);
  const thick = Math.max(1, round(1.5 * Math.max(width, height) / 640));
  const r = Math.min(Math.max(Math.trunc(Math.min(...faces.map(faceSide), 100) / 110), 1), 6);
  faces.forEach((f, k) => {
    const line = Math.max(1, Math.min(thick, round(faceSide(f) / 40)));
    const [cr, cg, cb] = colors[k % colors.length];
    ctx.strokeStyle = `rgb(${cr},${cg},${cb})`; ctx.lineWidth = line;
    ctx.strokeRect(round(f.box[0]), round(f.box[1]), round(f.box[2]) - round(f.box[0]), round(f.box[3]) - round(f.box[1]));
    ctx.strokeStyle = "#fff"; ctx.lineWidth = Math.max(1, line >> 1);
    for (const c of contours) {
      ctx.beginPath();
      c.forEach((i, n) => (n ? ctx.lineTo : ctx.moveTo).call(ctx, round(f.points[i][0]), round(f.points[i][1])));
      ctx.stroke();
    }
    ctx.fillStyle = f.points.length > 1 ? "rgb(0,255,0)" : "rgb(255,0,0)";
    ctx.beginPath();
    for (const [x, y] of f.points) { ctx.moveTo(round(x) + r, round(y)); ctx.arc(round(x), round(y), r, 0, 2 * Math.PI); }
    ctx.fill();
  });
}

// -- loading the vendored files -----------------------------------------------------------------
async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function gunzipped(url) {  // the .wasm files are stored gzipped (each is over 10 MB unpacked)
  const raw = await fetchBytes(url);
  if (raw[0] !== 0x1f || raw[1] !== 0x8b) return raw;  // a server that sent it with Content-Encoding: gzip
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export function unsupported() {  // why this browser cannot run the live mode itself ("" if it can)
  if (typeof WebAssembly !== "object") return "no WebAssembly";
  if (typeof DecompressionStream !== "function") return "no DecompressionStream";
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return "no camera access for scripts (an https page is needed)";
  return "";
}

// -- the live mode ------------------------------------------------------------------------------
class Live {
  constructor(root, cfg) {
    this.cfg = cfg; this.root = root;
    this.video = root.querySelector("video");
    this.overlay = root.querySelector("canvas.fkd-overlay");
    this.status = root.querySelector(".fkd-live-status");
    this.button = root.querySelector("button.fkd-live-start");
    this.work = document.createElement("canvas");
    this.wctx = this.work.getContext("2d", { willReadFrequently: true });
    this.octx = this.overlay.getContext("2d");
    this.strength = cfg.strength; this.contours = cfg.contours; this.modelName = cfg.model;
    this.smoother = new PointSmoother(strengthToCutoff(this.strength));
    this.faces = []; this.lastDetect = null; this.running = false; this.frames = []; this.recording = 0; this.records = [];
    this.last = null; this.fps = 0; this.ms = { detect: null, landmarks: null, frame: null }; this.mode = "idle";
    this.button.addEventListener("click", () => (this.running ? this.stop() : this.start()));
  }

  say(html) { this.status.innerHTML = html; }

  async libraries() {
    if (this.ort) return;
    const v = this.cfg.vendor;
    this.say("loading the model into your browser…");
    const ort = await import(v.ort + "ort.wasm.min.mjs");
    ort.env.wasm.numThreads = 1;   // no cross-origin isolation: one thread
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = { mjs: new URL(v.ort + "ort-wasm-simd-threaded.mjs", location.href).href };
    ort.env.wasm.wasmBinary = await gunzipped(v.ort + "ort-wasm-simd-threaded.wasm.gz");
    const mp = await import(v.mediapipe + "vision_bundle.mjs");
    const wasm = new Blob([await gunzipped(v.mediapipe + "vision_wasm_internal.wasm.gz")], { type: "application/wasm" });
    const fileset = { wasmLoaderPath: new URL(v.mediapipe + "vision_wasm_internal.js", location.href).href, wasmBinaryPath: URL.createObjectURL(wasm) };
    this.detector = await mp.FaceDetector.createFromOptions(fileset, {
      baseOptions: { modelAssetBuffer: await fetchBytes(this.cfg.detector), delegate: "CPU" },
      runningMode: "VIDEO", minDetectionConfidence: this.cfg.min_score,
    });
    const blank = document.createElement("canvas");
    blank.width = blank.height = 64;
    this.detector.detectForVideo(blank, 1);  // compiles the graph now, not on the first camera frame
    this.ort = ort;
  }

  async model() {
    const g = this.cfg.graphs[this.modelName];
    if (!g) throw new Error(`${this.modelName} has no exported graph on this server`);
    if (!this.models) this.models = {};
    if (!this.models[this.modelName]) this.models[this.modelName] = await Model.load(this.ort, g, this.cfg.settings);
    return this.models[this.modelName];
  }

  async start() {
    const why = unsupported();
    if (why) return this.fallback(why);
    this.button.disabled = true;
    try {
      await this.libraries();
      this.lm = await this.model();
      this.say("asking for the camera…");
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (e) {
      this.button.disabled = false;
      return this.fallback(e.message || String(e));
    }
    this.video.srcObject = this.stream;
    await this.video.play();
    this.running = true; this.mode = "browser";
    this.button.disabled = false; this.button.textContent = "Stop the camera";
    this.root.classList.add("fkd-running");
    this.reset();
    this.schedule();
  }

  stop() {
    this.running = false;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null; this.video.srcObject = null;
    this.octx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    this.button.textContent = "Start the camera";
    this.root.classList.remove("fkd-running");
    if (this.mode === "browser") this.say("stopped");
    this.mode = "idle";
  }

  fallback(why) {  // the server streams instead: switch the tab's "Where the model runs" radio
    this.stop();
    this.mode = "server";
    this.root.querySelector(".fkd-live").classList.add("fkd-server");
    this.say(`<b>runs on the server</b>: your browser cannot run it here (${why.replace(/[<>&]/g, "")}). Use the webcam below.`);
    const radio = document.querySelector(`#live-mode input[value="${this.cfg.server_choice}"]`);
    if (radio && !radio.checked) radio.click();
  }

  reset() {
    this.faces = []; this.lastDetect = null; this.smoother.reset(); this.frames = [];
    this.lmTimes = []; this.detTimes = []; this.frameTimes = []; this.grabTimes = [];
  }

  schedule() {
    if (!this.running) return;
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(() => this.tick());
    else requestAnimationFrame(() => this.tick());
  }

  async tick() {
    if (!this.running) return;
    if (!this.root.offsetParent) { this.stop(); this.say("stopped: the tab was left"); return; }  // camera off when unseen
    const t = this.video.currentTime;
    if (t !== this.lastTime && this.video.videoWidth) {
      this.lastTime = t;
      try { await this.step(); } catch (e) { this.running = false; throw e; }
    }
    this.schedule();
  }

  detect(frame, frameTime) {  // BlazeFace on the frame's pixels (an ImageData: faster than the canvas)
    const t0 = performance.now();
    const { width: w, height: h } = frame;
    const res = this.detector.detectForVideo(frame, frameTime);
    this.msDetect = performance.now() - t0;
    const out = [];
    for (const d of res.detections) {
      const b = d.boundingBox;
      const box = [Math.min(Math.max(b.originX, 0), w), Math.min(Math.max(b.originY, 0), h),
        Math.min(Math.max(b.originX + b.width, 0), w), Math.min(Math.max(b.originY + b.height, 0), h)];
      const marks = d.keypoints && d.keypoints.length === 6 ? d.keypoints.map((k) => [k.x * w, k.y * h]) : null;
      if (box[2] - box[0] >= 4 && box[3] - box[1] >= 4) out.push([box, d.categories[0].score, marks]);
    }
    return out.sort((a, b) => a[0][0] - b[0][0]);
  }

  async fromFound(lm, frame, found, low, rec) {  // the faces of the detector's finds (recorded for the tests)
    if (rec) rec.found = found.map(([box, score, marks]) => ({ box, score, marks }));
    const faces = [];
    for (const [box, score, marks] of found) { const f = await lm.fromBox(frame, box, score, low, marks); if (f) faces.push(f); }
    return faces;
  }

  async step() {  // fkd.stream.Tracker.__call__ on one camera frame
    const t0 = performance.now();
    const w = this.video.videoWidth, h = this.video.videoHeight;
    if (this.work.width !== w || this.work.height !== h) {
      this.work.width = this.overlay.width = w; this.work.height = this.overlay.height = h;
    }
    this.wctx.drawImage(this.video, 0, 0, w, h);
    const frame = this.wctx.getImageData(0, 0, w, h);
    const tGrab = performance.now() - t0;
    const lm = this.lm, low = lm.s.min_confidence, now = t0 / 1000, prev = this.faces;
    const rec = this.recording > 0 ? { frame, prev: prev.map((f) => ({ box: f.box, points: f.points })) } : null;
    lm.ms = 0; this.msDetect = null;
    let faces = [], kind = "track";
    for (const f of prev) { const g = await lm.follow(frame, f); if (g) faces.push(g); }
    faces = distinct(faces);
    if (!faces.length) {
      kind = "detect";
      faces = distinct(await this.fromFound(lm, frame, this.detect(frame, t0), low, rec));
      this.lastDetect = now;
    } else if (this.lastDetect === null || now - this.lastDetect >= this.cfg.detect_every_s) {
      kind = "track+detect";
      const found = this.detect(frame, t0).filter(([b]) => !faces.some((f) => near(b, f)));
      faces = faces.concat(await this.fromFound(lm, frame, found, low, rec)).sort((a, b) => a.box[0] - b.box[0]);
      this.lastDetect = now;
    }
    this.faces = faces;
    let shown = faces;
    if (this.strength > 0) {
      this.smoother.configure(strengthToCutoff(this.strength));
      shown = this.smoother.apply(faces, performance.now() / 1000);
    } else this.smoother.reset();
    draw(this.octx, shown, this.contours ? this.cfg.contour_lines : [], this.cfg.colors);
    const t1 = performance.now();
    // medians of the recent frames (of the detector's recent runs): the first runs, compiling, take 10×
    const median = (a, v, n) => { a.push(v); if (a.length > n) a.shift(); const b = a.slice().sort((x, y) => x - y); return b[b.length >> 1]; };
    this.ms.landmarks = median(this.lmTimes, lm.ms, 30);
    if (this.msDetect != null) this.ms.detect = median(this.detTimes, this.msDetect, 9);
    this.ms.frame = median(this.frameTimes, t1 - t0, 30);
    this.ms.grab = median(this.grabTimes, tGrab, 30);
    this.frames.push(t1);
    while (this.frames.length && this.frames[0] < t1 - 1000) this.frames.shift();
    this.fps = this.frames.length;  // frames done in the last second
    this.count = (this.count || 0) + 1;
    this.last = { n: this.count, t: t1, kind, width: w, height: h,
      faces: faces.map((f, i) => ({ box: f.box, points: f.points, confidence: f.confidence, smoothed: shown[i].points })) };
    if (rec) { this.records.push({ ...rec, kind, faces: this.last.faces }); this.recording--; }
    if (!this.lastSaid || t1 - this.lastSaid > 500) {
      this.lastSaid = t1;
      const d = this.ms.detect == null ? "–" : this.ms.detect.toFixed(1);
      this.say(`<b>in your browser</b> · <b class="fkd-fps">${this.fps} fps</b> · ${this.ms.frame.toFixed(1)} ms per frame ` +
        `(landmarks ${this.ms.landmarks.toFixed(1)}, detection ${d}) · ${faces.length} face(s) · no frame leaves your browser`);
    }
  }

  set(opts) {
    if ("strength" in opts) this.strength = opts.strength;
    if ("contours" in opts) this.contours = opts.contours;
    if ("model" in opts && opts.model !== this.modelName) {
      this.modelName = opts.model;
      if (!this.cfg.graphs[opts.model]) return this.running && this.fallback(`${opts.model} has no exported graph on this server`);
      if (this.running) this.model().then((m) => { this.lm = m; this.reset(); }, (e) => this.fallback(e.message));
    }
  }

  setMode(choice) {
    const server = choice === this.cfg.server_choice;
    this.root.querySelector(".fkd-live").classList.toggle("fkd-server", server);
    if (server) {
      if (this.mode === "server") return;  // fallback() switched, and said why
      if (this.running) this.stop();
      this.mode = "server"; this.say("<b>on the server</b>: use the webcam below");
    } else if (this.mode === "server") { this.mode = "idle"; this.say("press <b>Start the camera</b>"); }
  }

  // for tests and benches: the next n frames' pixels, the faces they were followed from (or the detector
  // found, with its points), and their points
  record(n) { this.records = []; this.recording = n; }
  take() {
    const b64 = (d) => { let s = ""; for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000)); return btoa(s); };
    return this.records.map((r) => ({ kind: r.kind, width: r.frame.width, height: r.frame.height, rgba: b64(r.frame.data), prev: r.prev, faces: r.faces, found: r.found }));
  }
}

export function mount(root, cfg) {
  const abs = (u) => new URL(u, location.href).href;  // the app's paths, wherever it is served from
  cfg = { ...cfg, detector: abs(cfg.detector), vendor: { ort: abs(cfg.vendor.ort), mediapipe: abs(cfg.vendor.mediapipe) },
    graphs: Object.fromEntries(Object.entries(cfg.graphs).map(([k, g]) => [k, { onnx: abs(g.onnx), json: abs(g.json),
      ...(g.locator ? { locator: { onnx: abs(g.locator.onnx), json: abs(g.locator.json) } } : {}) }])) };
  const live = new Live(root, cfg);
  window.fkdLive = live;
  const why = unsupported();
  if (why) live.fallback(why);
  else if (!cfg.graphs[cfg.model]) live.fallback(`${cfg.model} has no exported graph on this server`);
  else live.say("press <b>Start the camera</b>: the model runs in your browser, at camera speed");
  return live;
}

export { cut, Model };  // for tests/test_browser.py: the crop and a model's passes against fkd's on the same input
