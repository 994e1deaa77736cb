"""`mnist-infer serve`: GET /api/unit, and what /api/predict and /api/info say about units."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from serving import call, drawing, running

from mnist_infer import explore
from mnist_infer.image import load_digit
from mnist_infer.network import Network
from mnist_infer.weights import file_sha256, load_weights


@pytest.fixture
def server(weights: Path):  # random 784-30-20-10
    with running(weights) as s:
        yield s


@pytest.mark.parametrize(("layer", "unit"), [(1, 0), (1, 29), (2, 7), (3, 9)])
def test_unit_answers_what_explore_says(
    server: object, weights: Path, layer: int, unit: int
) -> None:
    r = call(server, "GET", f"/api/unit?layer={layer}&unit={unit}")
    assert r.status == 200
    want = explore.unit_info(Network(load_weights(weights)), layer, unit)
    assert r.json == want | {"sha256": file_sha256(weights)}
    assert len(r.json["incoming"]) == [784, 30, 20][layer - 1]


def test_head_of_a_unit_sends_headers_only(server: object) -> None:
    r = call(server, "HEAD", "/api/unit?layer=1&unit=0")
    assert (r.status, r.body) == (200, b"")


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("", 400, "give the layer and the unit, as in ?layer=1&unit=0 (no layer)"),
        ("?layer=1", 400, "give the layer and the unit, as in ?layer=1&unit=0 (no unit)"),
        ("?layer=x&unit=0", 400, "layer must be a whole number, found 'x'"),
        ("?layer=1&unit=0&unit=1", 400, "give unit once, found it 2 times"),
        ("?layer=0&unit=0", 404, "no layer 0: the network's layers are 1 to 3"),
        ("?layer=4&unit=0", 404, "no layer 4: the network's layers are 1 to 3"),
        ("?layer=2&unit=20", 404, "no unit 20 in layer 2: its units are 0 to 19"),
        ("?layer=3&unit=-1", 404, "no unit -1 in layer 3: its units are 0 to 9"),
    ],
)
def test_malformed_or_missing_units_are_json_errors(
    server: object, query: str, status: int, message: str
) -> None:
    r = call(server, "GET", "/api/unit" + query)
    assert (r.status, r.json) == (status, {"error": message})


def test_unit_takes_get_only(server: object) -> None:
    r = call(server, "POST", "/api/unit?layer=1&unit=0", b"")
    assert (r.status, r.headers["Allow"]) == (405, "GET, HEAD")


def test_predict_adds_the_pre_activations_and_names_its_weights(
    server: object, weights: Path
) -> None:
    body = drawing(1)
    got = call(server, "POST", "/api/predict", body).json
    digit, _ = load_digit(io.BytesIO(body), "x")
    pre, _ = explore.forward(Network(load_weights(weights)), digit.reshape(1, -1) / 255)
    assert [len(a) for a in got["pre_activations"]] == [30, 20, 10]
    for a, want in zip(got["pre_activations"], pre, strict=True):
        np.testing.assert_allclose(a, want[0], atol=2e-6)
    assert got["sha256"] == file_sha256(weights)


def test_info_orders_the_hidden_units(server: object, weights: Path) -> None:
    layers = call(server, "GET", "/api/info").json["layers"]
    assert [(g["layer"], g["units"]) for g in layers] == [(1, 30), (2, 20)]
    assert layers == explore.layers(Network(load_weights(weights)))
