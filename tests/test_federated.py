"""Federated training on Flower: sites dealt out by case, the proximal term, the round history,
and a simulated federation of two sites whose global model `thyronet predict` loads and that
resumes from its last completed round."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

import synthetic
from thyronet.apps.cli import main
from thyronet.data.sources import open_source
from thyronet.errors import ThyronetError
from thyronet.federated.globalrun import GlobalRun
from thyronet.federated.history import weighted_mean
from thyronet.federated.local import ProximalTerm
from thyronet.federated.sites import partition
from thyronet.runs.config import load_config

TINY = ["--model", "resnet18", "--set", "model.descriptor_heads=false", "--set", "data.preprocess.size=32",
        "--set", "train.batch_size=8", "--set", "trainer.threads=1", "--set", "train.mixup=0"]


@pytest.fixture(scope="module")
def federated_ddti(tmp_path_factory):
    """Twenty labelled cases: ten for each of two sites, five of each class."""
    return synthetic.make_ddti(tmp_path_factory.mktemp("fed-ddti"), benign=10, malignant=10, unlabelled=1)


def test_sites_are_dealt_by_case_iid_or_skewed_by_label(federated_ddti):
    collection = open_source(federated_ddti)
    labels = {c: lab for c, lab in collection.case_labels().items() if lab is not None}
    iid = partition(collection, 2, "iid", seed=3)
    assert sorted(c for site in iid for c in site) == sorted(labels)  # every labelled case at exactly one site
    assert [Counter(labels[c] for c in site) for site in iid] == [Counter({0: 5, 1: 5})] * 2
    big = open_source(synthetic.make_ddti(federated_ddti.parent / "bigger", benign=12, malignant=12, unlabelled=0))
    big_labels = big.case_labels()
    by_label = [Counter(big_labels[c] for c in site) for site in partition(big, 3, "label", seed=3)]
    assert [c[1] / (c[0] + c[1]) for c in by_label] == sorted((c[1] / (c[0] + c[1]) for c in by_label), reverse=True)
    assert by_label[0][1] > by_label[0][0] and by_label[2][0] > by_label[2][1]
    with pytest.raises(ThyronetError, match="too few cases for 6 sites"):
        partition(collection, 6, "iid")


def test_the_proximal_term_pulls_each_gradient_towards_the_global_weights():
    module = torch.nn.Module()
    module.model = torch.nn.Linear(3, 2)
    anchor = {k: v.detach().clone() - 1.0 for k, v in module.model.state_dict().items()}
    module.model(torch.ones(1, 3)).sum().backward()
    before = {k: p.grad.clone() for k, p in module.model.named_parameters()}
    ProximalTerm(0.5, anchor).on_after_backward(None, module)
    for name, parameter in module.model.named_parameters():
        assert torch.allclose(parameter.grad, before[name] + 0.5 * (parameter.detach() - anchor[name]))


def test_a_site_sends_weights_counts_and_case_level_figures_only(federated_ddti):
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict

    from thyronet.federated.exchange import evaluate_reply, train_reply
    from thyronet.federated.sites import describe_site, site_split, subset

    config = load_config("federated")
    collection = open_source(federated_ddti)
    site = subset(collection, partition(collection, 2, "iid")[0])
    info = describe_site("hospital-a", site, site_split(config, site))
    assert (info.cases, info.benign_cases, info.malignant_cases, info.train_cases, info.val_cases) == (10, 5, 5, 8, 2)
    received = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=1, message_type=MessageType.TRAIN)
    state = torch.nn.Linear(2, 2).state_dict()
    trained = train_reply(received, state, images=12, loss=0.5, site=info).content
    assert set(trained) == {"arrays", "metrics", "site"} and set(trained["arrays"]) == set(state)
    assert dict(trained["metrics"]) == {"num-examples": 12, "train-loss": 0.5}
    sent = dict(trained["site"].items())  # a name, a fingerprint of the whole data set, counts
    assert set(sent) == {"name", "data-fingerprint", "cases", "images", "benign-cases", "malignant-cases", "train-cases", "val-cases"}
    assert sent["name"] == "hospital-a" and len(sent["data-fingerprint"]) == 64
    assert all(type(v) is int for k, v in sent.items() if k not in ("name", "data-fingerprint"))
    scored = evaluate_reply(received, {"n": 2, "auroc-case": 1.0, "balanced-acc-case": 0.5, "malignant-cases": 1}, info).content
    assert set(scored) == {"metrics", "site"} and scored["metrics"]["num-examples"] == 2


def test_the_strategy_is_flowers_own_and_fedadam_keeps_its_moments():
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

    from thyronet.federated.history import RoundHistory
    from thyronet.federated.server import build_strategy, optimiser_state, restore_optimiser

    federated = load_config("federated").federated
    assert type(build_strategy(federated, RoundHistory())) is FedAvg
    federated.strategy, federated.proximal_mu, federated.clients_per_round = "fedprox", 0.1, 3
    prox = build_strategy(federated, RoundHistory())
    assert isinstance(prox, FedProx) and prox.proximal_mu == 0.1 and prox.min_train_nodes == 3 and prox.min_available_nodes == 3
    federated.strategy = "fedadam"
    adam = build_strategy(federated, RoundHistory())
    assert isinstance(adam, FedAdam) and adam.eta == federated.server_lr
    adam.m_t, adam.v_t = {"w": torch.ones(2).numpy()}, {"w": torch.full((2,), 2.0).numpy()}
    again = build_strategy(federated, RoundHistory())
    restore_optimiser(again, optimiser_state(adam))
    assert again.m_t["w"].tolist() == [1.0, 1.0] and again.v_t["w"].tolist() == [2.0, 2.0]


def test_flowers_fedavg_averages_the_sites_replies_by_training_images():
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict

    from thyronet.federated.exchange import SiteInfo, network_state, train_reply
    from thyronet.federated.history import RoundHistory
    from thyronet.federated.server import build_strategy

    history = RoundHistory()
    strategy = build_strategy(load_config("federated").federated, history)
    received = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=1, message_type=MessageType.TRAIN)
    states = [{"w": torch.full((2,), 1.0), "n": torch.tensor(4)}, {"w": torch.full((2,), 4.0), "n": torch.tensor(8)}]
    replies = [train_reply(received, state, images, 0.5 * (i + 1), SiteInfo(f"site-{i}", "f" * 64, 5, 5, 2, 3, 4, 1))
               for i, (state, images) in enumerate(zip(states, (10, 30), strict=True))]
    arrays, metrics = strategy.aggregate_train(1, replies)
    averaged = network_state(arrays, states[0])
    assert averaged["w"].tolist() == [3.25, 3.25] and averaged["n"].dtype == torch.int64  # (10 x 1 + 30 x 4) / 40
    assert metrics["train-loss"] == pytest.approx((10 * 0.5 + 30 * 1.0) / 40)
    entry = history.commit(1)
    assert entry["sites"]["site-1"]["train-images"] == 30 and sorted(history.sites) == ["site-0", "site-1"]


def test_pooled_figures_are_weighted_means_over_the_sites_that_have_one():
    assert weighted_mean([(0.8, 10), (0.5, 30)]) == pytest.approx(0.575)
    assert weighted_mean([(0.8, 10), (float("nan"), 30)]) == pytest.approx(0.8)
    assert math.isnan(weighted_mean([]))


def test_a_run_folder_of_another_config_is_not_continued(tmp_path):
    config = load_config("federated")
    GlobalRun(tmp_path / "run", config).open()
    config.federated.rounds = 50  # more rounds: the same federation, continued
    GlobalRun(tmp_path / "run", config).check_config()
    config.train.lr = 0.5
    with pytest.raises(ThyronetError, match="another config"):
        GlobalRun(tmp_path / "run", config).check_config()


@pytest.mark.slow
def test_two_sites_federate_the_result_predicts_and_a_rerun_resumes(federated_ddti, tmp_path, capsys):
    out = tmp_path / "fed"
    command = ["federated", "simulate", "--data", str(federated_ddti), "--sites", "2", "--out", str(out), *TINY]
    assert main([*command, "--rounds", "1"]) == 0  # stopped after round 1, as an interrupted federation is
    first = json.loads((out / "federation.json").read_text())
    weights = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]

    assert main([*command, "--rounds", "2"]) == 0  # the same command resumes: only round 2 runs
    history = json.loads((out / "federation.json").read_text())
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    assert history["rounds"][0] == first["rounds"][0]
    for entry in history["rounds"]:
        assert sorted(entry["sites"]) == ["site-0", "site-1"]
        for site in entry["sites"].values():
            assert site["val-cases"] == 2 and site["train-images"] > 0 and 0 <= site["auroc-case"] <= 1
        cases = [s["val-cases"] for s in entry["sites"].values()]
        aurocs = [s["auroc-case"] for s in entry["sites"].values()]
        assert entry["pooled"]["auroc-case"] == pytest.approx(sum(a * c for a, c in zip(aurocs, cases, strict=True)) / sum(cases))
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["federation"]["round"] == 2
    assert any(not torch.equal(weights[k], checkpoint["state_dict"][k]) for k in weights)  # round 2 changed the model

    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["federation"]["rounds_done"] == 2 and provenance["versions"]["flwr"] == "1.30.0"
    for name, site in provenance["sites"].items():
        assert len(site["data_fingerprint"]) == 64 and site["cases"] == 10, name
        assert (site["benign_cases"], site["malignant_cases"], site["train_cases"], site["val_cases"]) == (5, 5, 8, 2)
    assert provenance["sites"]["site-0"]["data_fingerprint"] != provenance["sites"]["site-1"]["data_fingerprint"]
    assert "case_id" not in (out / "federation.json").read_text() + (out / "provenance.json").read_text()

    capsys.readouterr()
    assert main(["predict", str(out), str(federated_ddti / "1_1.jpg")]) == 0
    printed = capsys.readouterr().out
    assert "1_1.jpg" in printed and "a federated model" in printed
