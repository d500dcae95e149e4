"""Numbers written once: the README's and the model card's results tables are renderings of docs/results.json."""

import json
import sys

from conftest import REPO

sys.path.insert(0, str(REPO))
from studies.model_card import BEGIN, END, METADATA, PAGES, RESULTS, render, with_eval_metrics


def test_results_tables_are_generated_from_the_results_file():
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert {m["model"] for m in results["models"]} >= {"ann", "snn", "snn_t2", "snn_converted"}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert text.count(BEGIN) == 1 and text.count(END) == 1, page
        assert text == render(results, page), f"{page}: run studies/model_card.py --render"


def test_the_metadata_eval_metrics_are_the_results_files():
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert METADATA.read_text(encoding="utf-8") == with_eval_metrics(results), "run studies/model_card.py --render"
    metrics = json.loads(METADATA.read_text(encoding="utf-8"))["eval_metrics"]
    default = next(m for m in results["models"] if m["model"] == "snn")
    assert metrics["val_mean_dice"] == default["mean_dice"]  # MONAI's key: the default model's


def test_the_table_names_every_model_with_its_dice():
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    block = PAGES[0].read_text(encoding="utf-8").split(BEGIN)[1].split(END)[0]
    for m in results["models"]:
        assert f"`{m['model']}`" in block and f"{m['mean_dice']:.4f}" in block


def test_the_readmes_cohort_figures_are_the_throughput_studys():
    from studies import cohort_throughput

    result = json.loads((REPO / "docs" / "cohort" / "throughput_cpu.json").read_text(encoding="utf-8"))
    readme = cohort_throughput.README.read_text(encoding="utf-8")
    assert readme == cohort_throughput.render_readme(result), "run studies/cohort_throughput.py --render ..."
    line = cohort_throughput.summary(result)
    for name in ("task04_crops", "whole_heads"):
        for run in result["sets"][name]["runs"].values():
            assert f"{run['command']['wall_s']:.1f}" in line


def test_the_energy_tables_are_the_frontier_studys_and_measure_the_shipped_files():
    from bundle.inference.records import file_sha256
    from studies import energy_frontier

    result = json.loads(energy_frontier.JSON.read_text(encoding="utf-8"))
    for page in (energy_frontier.RESULTS_MD, energy_frontier.MODEL_CARD):
        text = page.read_text(encoding="utf-8")
        assert text == energy_frontier.render(result, page), f"{page}: run studies/energy_frontier.py --plot"
    shipped = [m for m in result["models"] if (REPO / "models" / m["checkpoint"]).is_file() and m["name"] == m["model"]]
    stale = [m["name"] for m in shipped if m.get("checkpoint_sha256") != file_sha256(REPO / "models" / m["checkpoint"])]
    assert not stale, f"docs/energy/frontier.json measured other files than models/ holds: {stale}; re-run the study"


def test_the_neurobench_table_is_the_studys_and_measures_the_shipped_files():
    from bundle.inference.records import file_sha256
    from studies import neurobench_metrics

    result = json.loads(neurobench_metrics.OUT.read_text(encoding="utf-8"))
    assert neurobench_metrics.RESULTS_MD.read_text(encoding="utf-8") == neurobench_metrics.render(result)
    stale = [m["model"] for m in result["models"]
             if m.get("checkpoint_sha256") != file_sha256(REPO / "models" / m.get("checkpoint", "?"))]  # fmt: skip
    assert not stale, f"docs/energy/neurobench.json measured other files than models/ holds: {stale}; re-run the study"
