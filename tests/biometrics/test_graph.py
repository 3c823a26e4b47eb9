"""Junction detection and typing on hand-drawn vessels with known answers."""

import numpy as np
import pytest
from synthetic import line_mask

from biometrics.graph import BIFURCATION, CROSSOVER, ENDPOINT, build_vessel_graph
from biometrics.skeleton import calibre_map, centreline, neighbour_count


def graph_of(mask):
    return build_vessel_graph(centreline(mask), calibre_map(mask))


def nodes(graph, kind):
    return [np.array(d["pos"]) for _, d in graph.nodes(data=True) if d["kind"] == kind]


class TestBuildVesselGraph:
    def test_y_is_one_bifurcation_with_three_endpoints(self):
        mask = line_mask([((60, 110), (60, 60)), ((60, 60), (20, 15)), ((60, 60), (100, 15))])
        g = graph_of(mask)
        (bif,) = nodes(g, BIFURCATION)
        assert np.linalg.norm(bif - (60, 60)) < 4
        assert len(nodes(g, ENDPOINT)) == 3
        assert not nodes(g, CROSSOVER)

    def test_x_is_one_crossover(self):
        g = graph_of(line_mask([((10, 10), (110, 110)), ((10, 110), (110, 10))]))
        (cross,) = nodes(g, CROSSOVER)
        assert np.linalg.norm(cross - (60, 60)) < 4
        assert len(nodes(g, ENDPOINT)) == 4

    def test_near_crossing_of_two_bifurcations_is_merged(self):
        # Two vessels cross at a shallow angle: the skeleton splits it into two 3-way nodes.
        g = graph_of(
            line_mask([((5, 60), (115, 66)), ((40, 5), (62, 62)), ((58, 62), (80, 118))], width=5)
        )
        kinds = [d["kind"] for _, d in g.nodes(data=True) if d["kind"] != ENDPOINT]
        assert kinds == [CROSSOVER]

    def test_distant_bifurcations_stay_separate(self):
        mask = line_mask([((5, 60), (115, 60)), ((30, 60), (30, 5)), ((90, 60), (90, 115))])
        g = graph_of(mask)
        bifs = sorted(tuple(np.rint(p).astype(int)) for p in nodes(g, BIFURCATION))
        assert len(bifs) == 2
        assert abs(bifs[0][0] - 30) < 4 and abs(bifs[1][0] - 90) < 4

    def test_short_spur_is_pruned(self):
        mask = line_mask([((5, 60), (115, 60)), ((60, 60), (60, 54))], width=5)
        g = graph_of(mask)
        assert not nodes(g, BIFURCATION)
        assert g.number_of_edges() == 1

    def test_edges_carry_geometry(self):
        g = graph_of(line_mask([((10, 60), (110, 60))], width=5))
        ((_, _, data),) = g.edges(data=True)
        assert 95 < data["length"] < 105
        assert 4 <= data["calibre"] <= 8  # cv2.line(thickness=5) paints 5-7 px
        assert data["tortuosity"] == pytest.approx(1.0, abs=0.05)

    def test_branch_angles_point_along_vessels(self):
        g = graph_of(
            line_mask([((60, 110), (60, 60)), ((60, 60), (20, 20)), ((60, 60), (100, 20))])
        )
        (angles,) = [d["angles"] for _, d in g.nodes(data=True) if d["kind"] == BIFURCATION]
        expected = sorted([np.pi / 2, -3 * np.pi / 4, -np.pi / 4])
        assert np.allclose(sorted(angles), expected, atol=0.3)

    def test_input_not_modified(self):
        mask = line_mask([((10, 10), (110, 110))])
        skel = centreline(mask)
        before = skel.copy()
        build_vessel_graph(skel, calibre_map(mask))
        assert np.array_equal(skel, before)

    def test_shape_mismatch_is_refused(self):
        with pytest.raises(ValueError, match="differ in shape"):
            build_vessel_graph(np.zeros((5, 5), bool), np.zeros((6, 6), np.float32))


def test_neighbour_count_of_a_line():
    skel = np.zeros((5, 7), bool)
    skel[2, 1:6] = True
    count = neighbour_count(skel)
    assert count[2].tolist() == [0, 1, 2, 2, 2, 1, 0]


def test_multigraph_builds_the_same_templates_as_networkx(monkeypatch):
    """biometrics.graph.MultiGraph replaces networkx.MultiGraph on the verify path: same
    storage and iteration order, so every template is byte-identical."""
    nx = pytest.importorskip("networkx")
    from synthetic import fundus

    import biometrics.graph
    from biometrics.demo import sample_images
    from biometrics.pipeline import Pipeline
    from segmentation.imageio import read_image

    pipeline = Pipeline()
    images = [fundus(seed, angle=3 * seed)[0] for seed in range(6)]
    images += [read_image(path) for path in sample_images().values()]
    ours = [pipeline.extract(rgb).to_bytes() for rgb in images]
    monkeypatch.setattr(biometrics.graph, "MultiGraph", nx.MultiGraph)
    assert [pipeline.extract(rgb).to_bytes() for rgb in images] == ours


def test_multigraph_semantics_match_networkx():
    nx = pytest.importorskip("networkx")
    from biometrics.graph import MultiGraph

    graphs = (MultiGraph(), nx.MultiGraph())
    for g in graphs:
        g.add_node("a", pos=1)
        keys = [g.add_edge("a", "b", w=1), g.add_edge("b", "a", w=2), g.add_edge("c", "c", w=3)]
        keys.append(g.add_edge("b", "c", w=4))
        g.remove_edge("a", "b", 0)
        g.add_edge("a", "b", w=5)  # len(keys) = 1 is taken: key 2, as networkx picks
        g.add_node("a", kind="x")  # updates, keeps the order
        g.keys = keys
    ours, theirs = graphs
    assert ours.keys == theirs.keys
    assert list(ours.edges(keys=True, data=True)) == list(theirs.edges(keys=True, data=True))
    assert list(ours.edges("b", data=True)) == list(theirs.edges("b", data=True))
    assert list(ours.nodes(data=True)) == list(theirs.nodes(data=True))
    assert [ours.degree(n) for n in ours.nodes] == [theirs.degree(n) for n in theirs.nodes]
    assert ours.number_of_edges() == theirs.number_of_edges()
    for g in graphs:
        g.remove_node("c")
        g.remove_nodes_from(["zz", "a"])
    assert list(ours.edges(keys=True)) == list(theirs.edges(keys=True))
    assert list(ours.nodes) == list(theirs.nodes) and ours.has_edge("a", "b") is False
