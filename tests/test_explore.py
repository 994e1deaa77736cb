"""explore: the forward pass step by step, one unit's weights, the units' order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_infer import explore
from mnist_infer.errors import NoSuchUnitError, UsageError
from mnist_infer.network import Network
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import load_weights


@pytest.fixture
def net(weights: Path) -> Network:
    return Network(load_weights(weights))  # random 784-30-20-10


def W(net: Network, i: int) -> np.ndarray:
    return net.params[f"W{i}"].astype(np.float64)


def test_forward_keeps_each_quantity_of_the_textbook_pass(net: Network) -> None:
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    pre, post = explore.forward(net, x)
    assert [a.shape for a in pre] == [(3, 30), (3, 20), (3, 10)]
    z = x
    for i, (a, out) in enumerate(zip(pre, post, strict=True), 1):
        want = z @ net.params[f"W{i}"] + net.params[f"b{i}"]
        np.testing.assert_allclose(a, want, rtol=1e-6, atol=1e-6)
        z = 1 / (1 + np.exp(-want)) if i < 3 else np.exp(want) / np.exp(want).sum(1, keepdims=True)
        np.testing.assert_allclose(out, z, rtol=1e-5, atol=1e-7)
    for got, want in zip(post, net.activations(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-7)


@pytest.mark.parametrize(
    ("sizes", "names"),
    [
        ([784, 50, 100, 10], ["x", "a1", "z1", "a2", "z2", "a3", "y"]),
        ([784, 10], ["x", "a1", "y"]),
        ([784, 8, 9, 7, 10], ["x", "a1", "z1", "a2", "z2", "a3", "z3", "a4", "y"]),
    ],
)
def test_steps_name_every_quantity_with_its_shape(sizes: list[int], names: list[str]) -> None:
    steps = explore.steps(sizes)
    assert [s["name"] for s in steps] == names
    assert steps[0] == {"name": "x", "op": "input", "shape": [1, 784]}
    assert steps[-1]["shape"] == [1, 10]
    assert steps[-1]["op"] == f"softmax(a{len(sizes) - 1})"
    for i in range(1, len(sizes)):
        a = steps[2 * i - 1]
        below = steps[2 * i - 2]["name"]
        assert a == {
            "name": f"a{i}",
            "op": f"{below} · W{i} + b{i}",
            "shape": [1, sizes[i]],
            "weights": [sizes[i - 1], sizes[i]],
        }
        assert steps[2 * i]["shape"] == [1, sizes[i]]


def test_leanings_follow_the_weights_on_to_the_scores(net: Network) -> None:
    first, last = explore.leanings(net)
    np.testing.assert_allclose(last, W(net, 3))
    np.testing.assert_allclose(first, W(net, 2) @ W(net, 3))


@pytest.mark.parametrize(("layer", "unit"), [(1, 0), (1, 29), (2, 5), (3, 9)])
def test_pixel_view_follows_the_weights_back_to_the_pixels(
    net: Network, layer: int, unit: int
) -> None:
    m = np.eye(784)
    for i in range(1, layer + 1):
        m = m @ W(net, i)
    np.testing.assert_allclose(explore.pixel_view(net, layer, unit), m[:, unit], rtol=1e-9)


def test_units_are_grouped_by_the_digit_they_favour() -> None:
    leaning = np.array(
        [[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 9.0], [4.0, 1.0, 0.0]]
    )
    favours, order = explore.unit_order(leaning)
    assert favours.tolist() == [1, 0, 1, 2, 0]
    assert order.tolist() == [4, 1, 0, 2, 3]  # digit 0 (strongest first), then 1, then 2


def test_layers_describe_every_hidden_unit(net: Network) -> None:
    got = explore.layers(net)
    assert [(g["layer"], g["units"]) for g in got] == [(1, 30), (2, 20)]
    for g, leaning in zip(got, explore.leanings(net), strict=True):
        assert sorted(g["order"]) == list(range(g["units"]))
        assert g["favours"] == leaning.argmax(axis=1).tolist()
        assert [g["favours"][k] for k in g["order"]] == sorted(g["favours"])


@pytest.mark.parametrize(("layer", "unit"), [(1, 0), (1, 17), (2, 19)])
def test_a_hidden_unit_has_its_weights_and_its_strongest_outgoing_first(
    net: Network, layer: int, unit: int
) -> None:
    info = explore.unit_info(net, layer, unit)
    assert list(info) == ["layer", "unit", "bias", "incoming", "outgoing", "pixels", "digits"]
    assert (info["layer"], info["unit"]) == (layer, unit)
    assert info["bias"] == pytest.approx(float(net.params[f"b{layer}"][unit]), abs=1e-6)
    np.testing.assert_allclose(info["incoming"], W(net, layer)[:, unit], atol=1e-6)
    nxt = W(net, layer + 1)[unit]
    out = info["outgoing"]
    assert sorted(o["unit"] for o in out) == list(range(len(nxt)))
    for o in out:
        assert o["weight"] == pytest.approx(nxt[o["unit"]], abs=1e-6)
    strengths = [abs(o["weight"]) for o in out]
    assert strengths == sorted(strengths, reverse=True)
    np.testing.assert_allclose(info["digits"], explore.leanings(net)[layer - 1][unit], atol=1e-6)
    assert len(info["pixels"]) == 784


def test_an_output_unit_has_no_outgoing_connections(net: Network) -> None:
    info = explore.unit_info(net, 3, 4)
    assert (info["outgoing"], info["digits"]) == ([], None)
    assert len(info["incoming"]) == 20


@pytest.mark.parametrize(
    ("layer", "unit", "message"),
    [
        (0, 0, "no layer 0: the network's layers are 1 to 3"),
        (4, 0, "no layer 4: the network's layers are 1 to 3"),
        (-1, 0, "no layer -1: the network's layers are 1 to 3"),
        (1, 30, "no unit 30 in layer 1: its units are 0 to 29"),
        (2, -1, "no unit -1 in layer 2: its units are 0 to 19"),
        (3, 10, "no unit 10 in layer 3: its units are 0 to 9"),
    ],
)
def test_units_outside_the_network_are_refused(
    net: Network, layer: int, unit: int, message: str
) -> None:
    with pytest.raises(NoSuchUnitError) as err:
        explore.unit_info(net, layer, unit)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("query", "got"),
    [
        ("layer=1&unit=0", (1, 0)),
        ("unit=7&layer=3", (3, 7)),
        ("layer=-2&unit=%2B4", (-2, 4)),
        ("layer=1&unit=9999999999999&other=x", (1, 9999999999999)),
    ],
)
def test_unit_queries(query: str, got: tuple[int, int]) -> None:
    assert explore.parse_unit_query(query) == got


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "give the layer and the unit, as in ?layer=1&unit=0 (no layer)"),
        ("layer=1", "give the layer and the unit, as in ?layer=1&unit=0 (no unit)"),
        ("layer=1&unit=2&unit=3", "give unit once, found it 2 times"),
        ("layer=one&unit=2", "layer must be a whole number, found 'one'"),
        ("layer=1&unit=", "unit must be a whole number, found ''"),
        ("layer=1.5&unit=2", "layer must be a whole number, found '1.5'"),
        ("layer=%201&unit=2", "layer must be a whole number, found ' 1'"),
        ("layer=1&unit=%D9%A3", "unit must be a whole number, found '\u0663'"),
        ("layer=1&unit=" + "9" * 19, f"unit must be a whole number, found '{'9' * 19}'"),
        ("layer=1&unit=" + "9" * 41, f"unit must be a whole number, found '{'9' * 40}…'"),
    ],
)
def test_malformed_unit_queries(query: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        explore.parse_unit_query(query)
    assert not isinstance(err.value, NoSuchUnitError)
    assert str(err.value) == message


def test_the_shipped_weights_have_units_favouring_every_digit() -> None:
    net = Network(load_weights(default_weights_path()))
    for g in explore.layers(net):
        assert set(g["favours"]) == set(range(10))
