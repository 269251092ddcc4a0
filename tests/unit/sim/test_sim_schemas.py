from __future__ import annotations

import pytest

from obsbench import schemas
from obsbench.sim import DATASETS, SCHEMA_OF, schema_name


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_frame_validates_against_its_schema(small, dataset):
    frame = small[dataset]
    validated = schemas.validate(frame, schema_name(dataset))
    assert validated.schema == frame.schema  # already canonical: nothing to cast


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_frame_validates_with_incidents(with_incidents, dataset):
    schemas.validate(with_incidents[dataset], SCHEMA_OF[dataset])


NON_EMPTY = [d for d in DATASETS if d != "incidents"]


@pytest.mark.parametrize("dataset", NON_EMPTY)
def test_every_dataset_has_rows(small, dataset):
    assert small[dataset].height > 0


def test_result_is_a_mapping_with_counts(small):
    assert set(small) == set(DATASETS)
    assert small.rows == sum(small.counts().values())
    assert small.symbols.height == small.config.n_symbols
    assert small.strategies["capital"].to_list() == [small.config.capital] * 3
