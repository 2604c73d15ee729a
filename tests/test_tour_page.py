"""The tour's page in a real browser (Playwright + Debian's Chromium, at 1280 px).

The page must load offline with no error, fit the screen, show every figure,
and its interactive worked example must compute what ``ndconv.conv`` computes
(the reference here is PyTorch's semantics through ndconv, itself tested
against PyTorch; the lecture's own numbers are checked literally).
"""

import itertools
import re

import numpy as np
import pytest
from tour_report import quick_report

import ndconv


@pytest.fixture(scope="module")
def report_url():
    folder, r = quick_report()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    index = (folder / "report" / "index.html").resolve()
    return index.as_uri(), index.parent.as_uri() + "/"


@pytest.fixture
def loaded(page, report_url):
    url, _ = report_url
    page.goto(url)
    page.wait_for_load_state("load")
    return page


def tid(name):
    return f"[data-testid='{name}']"


def test_page_loads_offline_without_errors(loaded, report_url):
    url, base = report_url
    assert loaded.console_errors == []
    # Only the page itself and its own figures: no network request at all.
    assert loaded.requested[0] == url
    outside = [u for u in loaded.requested if not u.startswith(base)]
    assert outside == []
    assert any(u.startswith(base + "figures/") for u in loaded.requested)


def test_page_fits_1280_px_and_every_image_loads(loaded):
    assert loaded.evaluate("document.scrollingElement.scrollWidth") <= 1280
    # No element sticks out to the right of the viewport either.
    too_wide = loaded.evaluate("""[...document.querySelectorAll('main *')]
        .filter(e => e.getBoundingClientRect().right > 1280).map(e => e.tagName)""")
    assert too_wide == []
    imgs = loaded.evaluate("[...document.images].map(i => [i.src, i.naturalWidth, i.alt])")
    assert len(imgs) >= 12
    assert [src for src, w, _ in imgs if w == 0] == []
    assert all(len(alt) > 40 for _, _, alt in imgs)


def test_equations_are_rendered_mathml(loaded):
    boxes = loaded.evaluate("""[...document.querySelectorAll('math')]
        .map(m => { const r = m.getBoundingClientRect(); return [r.width, r.height]; })""")
    assert len(boxes) >= 7
    assert all(w > 20 and h > 10 for w, h in boxes)


def _grid(page, prefix, shape):
    return np.array([[float(page.locator(tid(f"{prefix}-{i}-{j}")).inner_text())
                      for j in range(shape[1])] for i in range(shape[0])])


def _out_shape(page):
    cells = page.eval_on_selector_all("[data-testid^='y-']", "es => es.map(e => e.dataset.testid)")
    if not cells:
        return (0, 0)
    ij = [tuple(int(v) for v in c.split("-")[1:]) for c in cells]
    return (max(i for i, _ in ij) + 1, max(j for _, j in ij) + 1)


def test_widget_opens_on_the_lectures_example(loaded):
    root = loaded.locator(tid("explorer"))
    assert root.count() == 1
    np.testing.assert_array_equal(_grid(loaded, "x", (3, 3)), np.arange(9).reshape(3, 3))
    np.testing.assert_array_equal(_grid(loaded, "k", (2, 2)), [[0, 1], [2, 3]])
    assert _out_shape(loaded) == (2, 2)
    np.testing.assert_array_equal(_grid(loaded, "y", (2, 2)), [[19, 25], [37, 43]])
    assert "0x0 + 1x1 + 3x2 + 4x3 = 19" in loaded.locator(tid("sum")).inner_text()
    loaded.locator(tid("y-1-1")).click()
    assert "4x0 + 5x1 + 7x2 + 8x3 = 43" in loaded.locator(tid("sum")).inner_text()
    # The window of y[1, 1] is highlighted on the input, and only it.
    win = loaded.eval_on_selector_all("[data-testid^='x-'].win",
                                      "es => es.map(e => e.dataset.testid).sort()")
    assert win == ["x-1-1", "x-1-2", "x-2-1", "x-2-2"]
    # ... and it shows: the window's cells are drawn in another colour than the rest.
    bg = "id => getComputedStyle(document.querySelector(`[data-testid='${id}']`)).backgroundColor"
    colours = {c: loaded.evaluate(f"({bg})('{c}')") for c in ("x-1-1", "x-2-2", "x-0-0", "y-1-1",
                                                             "y-0-0")}
    assert colours["x-1-1"] == colours["x-2-2"] != colours["x-0-0"]
    assert colours["y-1-1"] != colours["y-0-0"]  # the selected output cell too


def _terms(text):
    """'y[0, 1] = 1x0 + (-2)x1 = -2' -> ([(1, 0), (-2, 1)], -2)."""
    lhs, rhs = text.split(" = ", 1)[1].rsplit(" = ", 1)
    num = r"\(?(-?[\d.e+-]+)\)?"
    terms = [(float(a), float(b)) for a, b in re.findall(num + "x" + num, lhs)]
    return terms, float(rhs)


# (n_h, n_w, k_h, k_w, stride, padding, dilation): sizes, strides, paddings, dilations
SETTINGS = [
    (3, 3, 2, 2, 1, 0, 1), (4, 5, 3, 2, 1, 1, 1), (5, 5, 3, 3, 2, 0, 1), (6, 4, 2, 3, 2, 1, 1),
    (5, 6, 2, 2, 1, 0, 2), (7, 7, 3, 3, 3, 2, 2), (1, 4, 1, 2, 1, 0, 1), (4, 4, 4, 4, 1, 3, 1),
    (6, 6, 3, 2, 4, 2, 3), (8, 5, 5, 1, 2, 1, 1),
]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "x".join(map(str, s)))
def test_widget_equals_ndconv_conv(loaded, setting):
    nh, nw, kh, kw, s, p, d = setting
    for name, v in zip(["n-h", "n-w", "k-h", "k-w", "stride", "padding", "dilation"], setting):
        loaded.fill(tid(name), str(v))
    rng = np.random.default_rng(sum(setting))
    x = rng.integers(-9, 10, (nh, nw)).astype(float)
    k = rng.integers(-3, 4, (kh, kw)) + rng.choice([0, 0.5], (kh, kw))
    for (i, j), v in np.ndenumerate(x):
        loaded.fill(tid(f"x-{i}-{j}"), f"{v:g}")
    for (a, b), v in np.ndenumerate(k):
        loaded.fill(tid(f"k-{a}-{b}"), f"{v:g}")
    ref = ndconv.conv(x[None, None], k[None, None], stride=s, padding=p, dilation=d)[0, 0]
    assert _out_shape(loaded) == ref.shape
    np.testing.assert_allclose(_grid(loaded, "y", ref.shape), ref, rtol=0, atol=1e-9)
    # Every output's sum of products, read back from the readout.
    for i, j in itertools.product(range(ref.shape[0]), range(ref.shape[1])):
        if (i + j) % 2 and ref.size > 4:
            continue  # half of them on the larger grids keeps the test quick
        loaded.locator(tid(f"y-{i}-{j}")).click()
        text = loaded.locator(tid("sum")).inner_text()
        assert text.startswith(f"y[{i}, {j}] = ")
        terms, total = _terms(text)
        assert len(terms) == kh * kw
        # The taps in order: x at (i*s + a*d - p, j*s + b*d - p), zero in the padding.
        xp = np.pad(x, p)
        expect = [(xp[i * s + a * d, j * s + b * d], k[a, b])
                  for a in range(kh) for b in range(kw)]
        assert terms == expect
        assert total == pytest.approx(ref[i, j], abs=1e-9)


def test_widget_says_when_there_is_no_output(loaded):
    for name, v in [("n-h", 2), ("n-w", 2), ("k-h", 4), ("k-w", 4), ("padding", 0)]:
        loaded.fill(tid(name), str(v))
    with pytest.raises(ValueError, match="larger than the padded input"):
        ndconv.conv(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)))
    assert _out_shape(loaded) == (0, 0)
    assert "no output" in loaded.locator(tid("sum")).inner_text()


def _table(page, testid):
    rows = page.eval_on_selector_all(
        f"{tid(testid)} tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.innerText))")
    return np.array([[float(v) for v in r[1:]] for r in rows])


def test_derivation_numbers_match_a_recomputation(loaded):
    import skimage.data
    from scipy import ndimage

    crop = loaded.locator(tid("derive-crop"))
    r0, r1 = map(int, crop.get_attribute("data-rows").split(":"))
    c0, c1 = map(int, crop.get_attribute("data-cols").split(":"))
    x = skimage.data.camera()[r0:r1, c0:c1] / 255.0
    sobel = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_allclose(_table(loaded, "derive-x"), x, atol=5e-4)
    np.testing.assert_array_equal(_table(loaded, "derive-kernel"), sobel)
    # h = W x: the 'same' correlation with zero padding (SciPy as the reference).
    h = ndimage.correlate(x, sobel, mode="constant")
    np.testing.assert_allclose(_table(loaded, "derive-h"), h, atol=5e-4)
    assert float(loaded.locator(tid("derive-maxdiff")).inner_text()) < 1e-12
    errors = loaded.eval_on_selector_all("pre.error", "es => es.map(e => e.innerText)")
    assert errors[0].startswith("translation invariance is violated")
    assert errors[1].startswith("locality is violated")


def test_invariance_is_exact_for_the_circular_convolution(loaded):
    rows = loaded.eval_on_selector_all(
        f"{tid('invariance-table')} tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.innerText))")
    by_name = {r[0]: r for r in rows}
    assert by_name["convolution, circular padding"][4] == "0"
    assert by_name["convolution, circular padding"][5] == "holds"
    assert by_name["convolution, zero padding"][5] == "holds"
    assert float(by_name["locally connected 3×3"][4]) > 0.1
    assert float(by_name["fully connected"][4]) > 0.1


def test_table_of_contents_links_every_section(loaded):
    hrefs = loaded.eval_on_selector_all("nav.toc a", "as => as.map(a => a.getAttribute('href'))")
    assert hrefs == [f"#s{i}" for i in range(1, 11)]
    for h in hrefs:
        assert loaded.locator(h).count() == 1
