"""One list of shipped models: its files exist, and every entry point takes exactly its names."""

import pytest
from conftest import REPO

from bundle.cli import _parser
from bundle.config_checks import check_values
from bundle.errors import InputError
from bundle.inference.catalog import DESCRIPTIONS, MADE_BY, MODEL_FILES


def test_every_shipped_model_has_its_file_its_maker_and_a_description():
    assert set(MODEL_FILES) == set(MADE_BY) == set(DESCRIPTIONS)
    for name, file in MODEL_FILES.items():
        assert (REPO / "models" / file).is_file(), name


@pytest.mark.parametrize("name", list(MODEL_FILES))
def test_the_command_line_and_the_config_checks_take_every_name(name):
    assert _parser().parse_args(["segment", "in", "out", "--model", name]).model == name
    check_values({"model": name})


def test_a_name_outside_the_catalog_is_refused_everywhere(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["segment", "in", "out", "--model", "snn_t9"])
    assert "invalid choice: 'snn_t9'" in capsys.readouterr().err
    with pytest.raises(InputError, match="model: 'snn_t9' is not allowed"):
        check_values({"model": "snn_t9"})
