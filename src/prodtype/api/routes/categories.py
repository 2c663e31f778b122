"""The product types a prediction can have."""

from __future__ import annotations

from fastapi import APIRouter

from prodtype.api.deps import CurrentUser
from prodtype.api.schemas import CategoriesPublic, CategoryPublic
from prodtype.serving.deps import CatalogDep

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("")
def list_categories(_user: CurrentUser, catalog: CatalogDep) -> CategoriesPublic:
    """The product type codes and their names."""
    data = [CategoryPublic(prdtypecode=c.code, name=c.name, name_fr=c.name_fr) for c in catalog.categories]
    return CategoriesPublic(data=data, count=len(data))
