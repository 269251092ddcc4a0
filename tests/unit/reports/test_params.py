from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest

from obsbench.errors import ParameterError, ReportCellError, ReportError
from obsbench.reports.params import (
    ParameterSpec,
    inspect_parameters,
    parse_assignments,
    validate_parameters,
)

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
SHIPPED = Path(__file__).parents[3] / "notebooks"


def test_inspect_reads_types_defaults_and_help_without_running() -> None:
    specs = inspect_parameters(NOTEBOOKS / "params.ipynb")
    assert list(specs) == ["start", "end", "rows", "scale", "names", "flag", "interactive"]
    assert specs["start"] == ParameterSpec("start", "str", "2024-01-01", "first day")
    assert specs["start"].is_date
    assert specs["rows"].type == "int"
    assert specs["names"].type == "list[str] | None"
    assert specs["names"].optional
    assert specs["flag"].default is False


def test_inspect_agrees_with_papermill_where_papermill_can_parse() -> None:
    """papermill's regex parser skips ``list[str] | None`` lines ("Unable to parse line");
    every parameter it does read matches ours, and ours lists the skipped ones too."""
    import papermill

    for path in [NOTEBOOKS / "params.ipynb", *SHIPPED.glob("*.ipynb")]:
        ours = inspect_parameters(path)
        theirs = papermill.inspect_notebook(str(path))
        assert set(theirs) <= set(ours), path.name
        assert [n for n in ours if n in theirs] == list(theirs), path.name
        for name, param in theirs.items():
            assert ours[name].default == ast.literal_eval(param["default"]), (path.name, name)
    assert "names" in inspect_parameters(NOTEBOOKS / "params.ipynb")


def test_notebook_without_parameters_cell_declares_nothing() -> None:
    assert inspect_parameters(NOTEBOOKS / "noparams.ipynb") == {}


@pytest.mark.parametrize(
    ("source", "match"),
    [
        pytest.param("x: int = (", "does not parse", id="syntax_error"),
        pytest.param("x: int = compute()", "non-literal default", id="non_literal_default"),
    ],
)
def test_bad_parameters_cell_is_a_report_error(tmp_path: Path, source: str, match: str) -> None:
    nb = {
        "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": source}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(ReportError, match=match):
        inspect_parameters(path)


def test_missing_notebook_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        inspect_parameters(tmp_path / "nope.ipynb")


SPECS = inspect_parameters(NOTEBOOKS / "params.ipynb")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"rows": "12"}, {"rows": 12}, id="int_from_string"),
        pytest.param({"rows": 12.0}, {"rows": 12}, id="int_from_integral_float"),
        pytest.param({"scale": "2"}, {"scale": 2.0}, id="float_from_string"),
        pytest.param({"scale": 3}, {"scale": 3.0}, id="float_from_int"),
        pytest.param({"flag": "yes"}, {"flag": True}, id="bool_yes"),
        pytest.param({"flag": "0"}, {"flag": False}, id="bool_zero"),
        pytest.param({"names": "a, b"}, {"names": ["a", "b"]}, id="list_comma_separated"),
        pytest.param({"names": '["a"]'}, {"names": ["a"]}, id="list_json"),
        pytest.param({"names": "none"}, {"names": None}, id="optional_none"),
        pytest.param({"start": "2024-02-29"}, {"start": "2024-02-29"}, id="iso_date"),
        pytest.param({}, {}, id="nothing_given_keeps_defaults"),
    ],
)
def test_validate_coerces_to_declared_types(given: dict, expected: dict) -> None:
    assert validate_parameters(SPECS, given, report="params") == expected


@pytest.mark.parametrize(
    ("given", "problems"),
    [
        pytest.param({"rows": "ten"}, ["rows: 'ten' is not a valid int"], id="bad_int"),
        pytest.param({"rows": 1.5}, ["rows: 1.5 is not a valid int"], id="fractional_int"),
        pytest.param({"rows": True}, ["rows: True is not a valid int"], id="bool_is_not_int"),
        pytest.param({"flag": "maybe"}, ["flag: 'maybe' is not a boolean"], id="bad_bool"),
        pytest.param(
            {"start": "01/02/2024"}, ["start: '01/02/2024' is not an ISO date"], id="bad_date"
        ),
        pytest.param({"scale": None}, ["scale: None is not allowed"], id="none_not_allowed"),
        pytest.param({"rowz": "1"}, ["unknown parameter 'rowz' (did you mean 'rows'?)"], id="typo"),
        pytest.param(
            {"x": 1, "rows": "a"},
            ["unknown parameter 'x'", "rows: 'a' is not a valid int"],
            id="every_problem_listed",
        ),
    ],
)
def test_validate_names_every_problem(given: dict, problems: list[str]) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters(SPECS, given, report="params")
    assert len(info.value.problems) == len(problems)
    for found, wanted in zip(info.value.problems, problems, strict=True):
        assert found.startswith(wanted)
    assert "declared parameters: start, end, rows" in str(info.value)


def test_parse_assignments_splits_on_the_first_equals_sign() -> None:
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ParameterError, match="'oops' is not of the form name=value"):
        parse_assignments(["oops"])


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ParameterError("sla", ["a", "b"]), id="parameter_error"),
        pytest.param(
            ReportCellError(
                cell_index=3,
                ename="KeyError",
                evalue="'x'",
                notebook_path="/r/x.ipynb",
                exec_count=2,
                report="sla",
            ),
            id="cell_error",
        ),
    ],
)
def test_report_errors_pickle_with_their_fields(error: ReportError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_cell_error_names_cell_exception_and_notebook() -> None:
    err = ReportCellError(
        cell_index=3,
        ename="ZeroDivisionError",
        evalue="division by zero",
        notebook_path="/r/b.ipynb",
        exec_count=3,
        report="broken",
    )
    assert (
        err.message == "report 'broken': cell 3 (In [3]) raised ZeroDivisionError: division by zero"
    )
    assert "/r/b.ipynb" in err.hint
    assert isinstance(err, ReportError)
