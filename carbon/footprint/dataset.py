"""Versioned, sourced emission-factor datasets shipped in ``carbon/footprint/data/<version>/``.

A dataset never changes once released: a correction is a new version directory. Every
result records the version it used, so an old result can always be recomputed.
"""
from __future__ import annotations

import csv
import difflib
import functools
import string
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
    """A city, airport or province we do not know, with the closest names we do know (and how to
    show them to a person, e.g. "PEK Beijing")."""

    def __init__(self, kind: str, name: str, suggestions: list[str], shown: list[str] | None = None):
        super().__init__(f"unknown {kind} {name!r}")
        self.kind, self.name, self.suggestions = kind, name, suggestions
        self.shown = shown or suggestions


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


@dataclass(frozen=True, slots=True)
class Metro:
    """A metropolitan (city) code and its airports, the main one first: BJS is PEK and PKX."""

    code: str
    name_zh: str
    name_en: str
    airports: tuple[str, ...]


@functools.cache
def metros() -> dict[str, Metro]:
    """IATA city codes of the metropolitan areas people fly to most (``data/metro_codes.csv``). A code
    that is also an airport's own (SHA is Hongqiao) names that airport; the table still says which
    city it belongs to."""
    return {row["code"]: Metro(row["code"], row["name_zh"], row["name_en"], tuple(row["airports"].split()))
            for row in _rows(DATA_DIR / "metro_codes.csv")}


def airport(code: str) -> dict:
    """An airport by IATA code (from the ``airportsdata`` package); a metropolitan code that names
    no airport stands for its main airport (BJS → PEK: see ``city_code_of``)."""
    code = code.upper()
    found = _airports().get(code)
    if found is None and code in metros():
        found = _airports()[metros()[code].airports[0]]
    if found is None:
        close = close_airports(code)
        raise UnknownName("airport", code, close, [f"{iata} {_airports()[iata]['city']}".strip() for iata in close])
    return found


def city_code_of(code: str) -> Metro | None:
    """The metropolitan area ``code`` names when it is a city code and no airport's own code."""
    code = code.upper()
    return metros().get(code) if code not in _airports() else None


def close_airports(code: str, limit: int = 5) -> list[str]:
    """Airports a three-letter code that names none may have meant, best first. Among Chinese and
    metropolitan airports: those of a city or with a name beginning with its letters (TOK → HND, NRT;
    CHE → CTU, TFU), then codes one letter off or with two letters swapped (PEJ → PEK); then Chinese
    codes with its first letter and two letters off (ZZQ → ZHA); then the same two searches over
    every other airport. A few dictionary look-ups: an unknown code costs no scan of 7,800 airports."""
    code = code.upper()
    index = _airport_index()
    airports = _airports()

    def rank(iata: str) -> tuple:  # Chinese first, then metropolitan airports in the table's order
        return airports[iata]["country"] != "CN", index.major.get(iata, len(index.major)), iata

    prefix = code.lower()
    of_metro = [iata for metro in metros().values() if metro.name_en.lower().startswith(prefix)
                for iata in metro.airports]
    by_city, by_name = index.by_city.get(prefix, set()), index.by_name.get(prefix, set())
    named = sorted(by_city | by_name, key=lambda iata: (rank(iata)[0], iata not in by_city,
                                                         -sum(x == y for x, y in zip(code, iata)), iata))
    one_off = sorted((iata for iata in set(_one_edit(code)) if iata in airports), key=rank)
    two_off = sorted(iata for iata in index.chinese_by_initial.get(code[:1], ())
                     if sum(x != y for x, y in zip(code, iata)) == 2)
    groups = [of_metro, [iata for iata in named if iata in index.known],
              [iata for iata in one_off if iata in index.known], two_off, named, one_off]
    return list(dict.fromkeys(iata for group in groups for iata in group if iata != code))[:limit]


@dataclass(frozen=True, slots=True)
class _AirportIndex:
    by_city: dict[str, set[str]]  # the first three letters of the city, lower case → codes
    by_name: dict[str, set[str]]  # the same of the airport's name
    chinese_by_initial: dict[str, list[str]]
    major: dict[str, int]  # airports of the metropolitan table, in its order
    known: frozenset[str]  # Chinese and metropolitan airports: suggested first


@functools.cache
def _airport_index() -> _AirportIndex:
    by_city: dict[str, set[str]] = {}
    by_name: dict[str, set[str]] = {}
    chinese: dict[str, list[str]] = {}
    for iata, info in _airports().items():
        by_city.setdefault(info["city"].lower()[:3], set()).add(iata)
        by_name.setdefault(info["name"].lower()[:3], set()).add(iata)
        if info["country"] == "CN":
            chinese.setdefault(iata[:1], []).append(iata)
    major = {iata: order for order, iata in enumerate(iata for metro in metros().values() for iata in metro.airports)}
    known = frozenset(major) | frozenset(iata for codes in chinese.values() for iata in codes)
    return _AirportIndex(by_city, by_name, chinese, major, known)


def _one_edit(code: str):
    """Every code one letter replaced, or two neighbouring letters swapped, away from ``code``."""
    for position, letter in enumerate(code):
        for other in string.ascii_uppercase:
            if other != letter:
                yield code[:position] + other + code[position + 1:]
    for position in range(len(code) - 1):
        yield code[:position] + code[position + 1] + code[position] + code[position + 2:]
