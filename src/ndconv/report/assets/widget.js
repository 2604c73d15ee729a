// The worked example, interactive: y[i,j] = sum_{a,b} k[a,b] x[i*s + a*d - p, j*s + b*d - p],
// zero outside the input (zero padding), as ndconv.conv with one channel.
// Plain JavaScript, no library; the data-testid attributes are what the tests drive.
(function () {
  "use strict";
  const root = document.querySelector('[data-testid="explorer"]');
  if (!root) return;
  const ctl = (id) => root.querySelector('[data-testid="' + id + '"]');
  const LIMITS = { "n-h": [1, 10], "n-w": [1, 10], "k-h": [1, 5], "k-w": [1, 5],
                   "stride": [1, 4], "padding": [0, 3], "dilation": [1, 3] };
  let X = null, K = null, sel = [0, 0];

  function read(id) {
    const [lo, hi] = LIMITS[id];
    const v = parseInt(ctl(id).value, 10);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
  }
  function settings() {
    return { nh: read("n-h"), nw: read("n-w"), kh: read("k-h"), kw: read("k-w"),
             s: read("stride"), p: read("padding"), d: read("dilation") };
  }
  // The lecture's arrays: X = 0, 1, 2, ... row by row, K likewise.
  function arange(h, w) {
    return Array.from({ length: h }, (_, i) => Array.from({ length: w }, (_, j) => i * w + j));
  }
  function fmt(v) {
    const t = String(Number(v.toPrecision(12)));
    return t === "-0" ? "0" : t;
  }
  function paren(v) { const t = fmt(v); return t.startsWith("-") ? "(" + t + ")" : t; }
  function outSize(n, k, s, p, d) { return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1; }
  function xAt(i, j) {
    return (i >= 0 && j >= 0 && i < X.length && j < X[0].length) ? X[i][j] : 0;
  }
  function taps(st, i, j) {   // [(row, col, x value, k value)] behind y[i, j]
    const out = [];
    for (let a = 0; a < st.kh; a++) {
      for (let b = 0; b < st.kw; b++) {
        const r = i * st.s + a * st.d - st.p, c = j * st.s + b * st.d - st.p;
        out.push([r, c, xAt(r, c), K[a][b]]);
      }
    }
    return out;
  }
  function cell(tr, text, cls, testid, editable) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (testid) td.dataset.testid = testid;
    if (editable) { td.contentEditable = "true"; td.spellcheck = false; td.inputMode = "decimal"; }
    tr.appendChild(td);
    return td;
  }
  function editable(td, arr, i, j) {
    td.addEventListener("input", () => {
      const v = parseFloat(td.textContent.replace(",", "."));
      if (Number.isFinite(v)) { arr[i][j] = v; update(); }
    });
    td.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); td.blur(); } });
    td.addEventListener("blur", () => { td.textContent = fmt(arr[i][j]); });
  }

  // Builds the three grids; update() fills the output and the highlight.
  function build() {
    const st = settings();
    if (!X || X.length !== st.nh || X[0].length !== st.nw) X = arange(st.nh, st.nw);
    if (!K || K.length !== st.kh || K[0].length !== st.kw) K = arange(st.kh, st.kw);
    const gx = root.querySelector(".gx"), gk = root.querySelector(".gk");
    gx.replaceChildren(); gk.replaceChildren();
    for (let r = -st.p; r < st.nh + st.p; r++) {
      const tr = document.createElement("tr");
      for (let c = -st.p; c < st.nw + st.p; c++) {
        const inside = r >= 0 && c >= 0 && r < st.nh && c < st.nw;
        const td = cell(tr, inside ? fmt(X[r][c]) : "0", inside ? "" : "pad",
                        inside ? "x-" + r + "-" + c : null, inside);
        td.dataset.r = r; td.dataset.c = c;
        if (inside) editable(td, X, r, c);
      }
      gx.appendChild(tr);
    }
    for (let a = 0; a < st.kh; a++) {
      const tr = document.createElement("tr");
      for (let b = 0; b < st.kw; b++) editable(cell(tr, fmt(K[a][b]), "", "k-" + a + "-" + b, true), K, a, b);
      gk.appendChild(tr);
    }
    update();
  }

  function update() {
    const st = settings();
    const oh = outSize(st.nh, st.kh, st.s, st.p, st.d), ow = outSize(st.nw, st.kw, st.s, st.p, st.d);
    const gy = root.querySelector(".gy");
    gy.replaceChildren();
    const shape = root.querySelector(".shape");
    const formula = (n, k, name) => "\u230a(" + n + " + 2\u00b7" + st.p + " \u2212 " + st.d + "\u00b7(" + k +
      " \u2212 1) \u2212 1) / " + st.s + "\u230b + 1 = " + outSize(n, k, st.s, st.p, st.d) + " " + name;
    shape.textContent = "output size: " + formula(st.nh, st.kh, "rows") + ",  " + formula(st.nw, st.kw, "columns");
    root.querySelectorAll(".gx td").forEach((td) => td.classList.remove("win"));
    const sum = ctl("sum");
    if (oh < 1 || ow < 1) {
      sum.textContent = "no output: the dilated kernel is larger than the padded input";
      return;
    }
    sel = [Math.min(sel[0], oh - 1), Math.min(sel[1], ow - 1)];
    for (let i = 0; i < oh; i++) {
      const tr = document.createElement("tr");
      for (let j = 0; j < ow; j++) {
        const t = taps(st, i, j);
        const y = t.reduce((acc, q) => acc + q[2] * q[3], 0);
        const td = cell(tr, fmt(y), "out" + (i === sel[0] && j === sel[1] ? " sel" : ""), "y-" + i + "-" + j, false);
        td.title = "y[" + i + ", " + j + "]: click to see its sum";
        td.addEventListener("click", () => { sel = [i, j]; update(); });
      }
      gy.appendChild(tr);
    }
    const t = taps(st, sel[0], sel[1]);
    const y = t.reduce((acc, q) => acc + q[2] * q[3], 0);
    sum.textContent = "y[" + sel[0] + ", " + sel[1] + "] = " +
      t.map((q) => paren(q[2]) + "x" + paren(q[3])).join(" + ") + " = " + fmt(y);
    const win = new Set(t.map((q) => q[0] + "," + q[1]));
    root.querySelectorAll(".gx td").forEach((td) => {
      if (win.has(td.dataset.r + "," + td.dataset.c)) td.classList.add("win");
    });
  }

  Object.keys(LIMITS).forEach((id) => ctl(id).addEventListener("input", build));
  build();
})();
