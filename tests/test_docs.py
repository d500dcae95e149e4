"""Numbers written once: the README's and the model card's results tables are renderings of docs/results.json."""

import json
import sys

from conftest import REPO

sys.path.insert(0, str(REPO))
from studies.model_card import BEGIN, END, PAGES, RESULTS, render


def test_results_tables_are_generated_from_the_results_file():
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert {m["model"] for m in results["models"]} >= {"ann", "snn", "snn_t2", "snn_converted"}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert text.count(BEGIN) == 1 and text.count(END) == 1, page
        assert text == render(results, page), f"{page}: run studies/model_card.py --render"


def test_the_table_names_every_model_with_its_dice():
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    block = PAGES[0].read_text(encoding="utf-8").split(BEGIN)[1].split(END)[0]
    for m in results["models"]:
        assert f"`{m['model']}`" in block and f"{m['mean_dice']:.4f}" in block
