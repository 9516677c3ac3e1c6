"""query_model reads a query-parameter model as FastAPI's own ``Query()`` model does.

Each case is sent to two routes of one app: FastAPI reading the model (the reference)
and :func:`provisioner.web.query_models.query_model`; answers and documents must agree.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from provisioner.web.api import CompanySearchParams, SearchParams
from provisioner.web.query_models import query_model

SEARCH = query_model(SearchParams)
COMPANIES = query_model(CompanySearchParams)


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/reference/search")
    def reference_search(params: Annotated[SearchParams, Query()]) -> Any:
        return params.model_dump(mode="json")

    @app.get("/fast/search", openapi_extra=SEARCH.openapi)
    def fast_search(params: Annotated[SearchParams, SEARCH.depends]) -> Any:
        return params.model_dump(mode="json")

    @app.get("/reference/companies")
    def reference_companies(params: Annotated[CompanySearchParams, Query()]) -> Any:
        return params.model_dump(mode="json")

    @app.get("/fast/companies", openapi_extra=COMPANIES.openapi)
    def fast_companies(params: Annotated[CompanySearchParams, COMPANIES.depends]) -> Any:
        return params.model_dump(mode="json")

    return app


CLIENT = TestClient(_app())

SEARCH_CASES = [
    "",
    "q=%E7%94%B0%E4%B8%AD",
    "q=a&q=b",  # the last value of a single-valued parameter
    "checked=1&checked=48&unchecked=3",
    "checked=0",
    "checked=49&checked=x",
    "field=kana%3D%E3%82%BF%E3%83%8A%E3%82%AB&field=name%3D%E7%94%B0",
    "field=nosuch%3Dx",
    "limit=1001",
    "limit=-1&offset=x",
    "limit=",
    "sort=-name",
    "sort=password",
    "match=any",
    "match=some",
    "updated_from=2026-01-31&updated_to=2026-02-30",
    "purchase_shipped=true&purchase_paid=0",
    "purchase_paid=maybe",
    "age_from=20&age_to=201",
    "unknown=1&q=x",
    "q=" + "x" * 501,
    "q=%00",
]
COMPANY_CASES = ["", "name=%E6%A0%AA", "phone=03&match=any", "name=%00", "limit=2000"]


@pytest.mark.parametrize("query", SEARCH_CASES)
def test_search_parameters_read_as_fastapi_reads_them(query: str) -> None:
    reference = CLIENT.get(f"/reference/search?{query}")
    fast = CLIENT.get(f"/fast/search?{query}")
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())


@pytest.mark.parametrize("query", COMPANY_CASES)
def test_company_search_parameters_read_as_fastapi_reads_them(query: str) -> None:
    reference = CLIENT.get(f"/reference/companies?{query}")
    fast = CLIENT.get(f"/fast/companies?{query}")
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())


def test_some_cases_are_refused() -> None:
    """The comparison covers refusals, not only answers."""
    refused = [q for q in SEARCH_CASES if CLIENT.get(f"/fast/search?{q}").status_code == 422]
    assert {"checked=0", "limit=1001", "sort=password", "match=some"} <= set(refused)


def test_the_documented_parameters_are_fastapis() -> None:
    paths = CLIENT.get("/openapi.json").json()["paths"]
    for reference, fast in (
        ("/reference/search", "/fast/search"),
        ("/reference/companies", "/fast/companies"),
    ):
        assert paths[fast]["get"]["parameters"] == paths[reference]["get"]["parameters"]


def test_a_model_with_aliases_or_nested_models_is_refused() -> None:
    from pydantic import Field

    class Aliased(BaseModel):
        q: str = Field(default="", alias="query")

    class Inner(BaseModel):
        x: int = 0

    class Nested(BaseModel):
        inner: Inner = Inner()

    with pytest.raises(TypeError, match="aliases"):
        query_model(Aliased)
    with pytest.raises(TypeError, match="another model"):
        query_model(Nested)
