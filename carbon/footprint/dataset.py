"""Versioned, sourced emission-factor datasets shipped in ``carbon/footprint/data/<version>/``.

A dataset never changes once released: a correction is a new version directory. Every
result records the version it used, so an old result can always be recomputed.
"""
from __future__ import annotations

import csv
import difflib
import functools
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from carbon.core.units import fixed

DATA_DIR = Path(__file__).parent / "data"
CURRENT_VERSION = "cn-2025.1"
CHINA_REGIONS = ("CN",)


@dataclass(frozen=True, slots=True)
class Factor:
    key: str
    value: Decimal
    unit: str
    region: str
    year: int | None
    source: str
    note: str

    @property
    def is_fallback(self) -> bool:
        """A figure from outside China (e.g. UK DESNZ) standing in for a missing Chinese one."""
        return not (self.region.startswith("CN") or self.region == "INT")

    def as_dict(self) -> dict:
        return {"key": self.key, "value": fixed(self.value), "unit": self.unit, "region": self.region,
                "year": self.year, "source": self.source, "note": self.note or None}


@dataclass(frozen=True, slots=True)
class Province:
    code: str
    name_zh: str
    name_en: str
    grid_region: str | None


@dataclass(frozen=True, slots=True)
class City:
    name_zh: str
    name_en: str
    province: str
    lat: float
    lon: float


class UnknownName(LookupError):
    """A city, airport or province we do not know, with the closest names we do know."""

    def __init__(self, kind: str, name: str, suggestions: list[str]):
        super().__init__(f"unknown {kind} {name!r}")
        self.kind, self.name, self.suggestions = kind, name, suggestions


class Dataset:
    def __init__(self, version: str):
        folder = DATA_DIR / version
        if not folder.is_dir():
            raise LookupError(f"no footprint dataset {version!r}")
        self.version = version
        self.factors: dict[str, Factor] = {}
        for row in _rows(folder / "factors.csv"):
            self.factors[row["key"]] = Factor(
                key=row["key"], value=Decimal(row["value"]), unit=row["unit"], region=row["region"],
                year=int(row["year"]) if row["year"] else None, source=row["source"], note=row["note"])
        self.provinces = {row["code"]: Province(row["code"], row["name_zh"], row["name_en"],
                                                row["grid_region"] or None)
                          for row in _rows(folder / "provinces.csv")}
        self.cities: dict[str, City] = {}
        for row in _rows(folder / "cities.csv"):
            city = City(row["name_zh"], row["name_en"], row["province"], float(row["lat"]), float(row["lon"]))
            self.cities[city.name_zh] = city
            self.cities[city.name_en.lower()] = city

    def factor(self, key: str) -> Factor:
        return self.factors[key]

    def optional_factor(self, key: str) -> Factor | None:
        return self.factors.get(key)

    def grid_factor(self, province: str | None) -> Factor:
        """Electricity factor: the province's own, else its grid region's, else the national average."""
        known = self.provinces.get(province) if province else None
        if known is not None:
            own = self.factors.get(f"grid.cn.province.{known.name_en.lower()}")
            if own is not None:
                return own
            if known.grid_region:
                return self.factors[f"grid.cn.region.{known.grid_region}"]
        return self.factors["grid.cn.national.avg"]

    def city(self, name: str) -> City:
        city = self.cities.get(name) or self.cities.get(name.lower())
        if city is None:
            raise UnknownName("city", name, difflib.get_close_matches(name, list(self.cities), n=3, cutoff=0.5))
        return city


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@functools.cache
def load(version: str = CURRENT_VERSION) -> Dataset:
    return Dataset(version)


@functools.cache
def _airports() -> dict[str, dict]:
    import airportsdata

    return airportsdata.load("IATA")


def airport(code: str) -> dict:
    """An airport by IATA code (from the ``airportsdata`` package)."""
    found = _airports().get(code.upper())
    if found is None:
        raise UnknownName("airport", code, _close_airports(code))
    return found


def _close_airports(text: str) -> list[str]:
    """Codes that look like ``text``, and codes of airports whose city is named ``text``."""
    airports = _airports()
    by_city = [code for code, info in airports.items() if info["city"].lower() == text.lower()]
    similar = difflib.get_close_matches(text.upper(), [code for code, info in airports.items()
                                                       if info["country"] == "CN"], n=3, cutoff=0.6)
    return (by_city + [code for code in similar if code not in by_city])[:5]
