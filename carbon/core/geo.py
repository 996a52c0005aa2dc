"""Great-circle distance (haversine on the mean Earth radius). Metres are computed here in Python
only; SQL orders rows by the haversine term, which grows with the distance, written once more as
an expression (tests/scenes/test_search.py holds the two terms equal)."""
from __future__ import annotations

import math

from sqlalchemy import Float, cast, func, literal

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius
_RADIANS = math.pi / 180


def haversine_term(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """hav(central angle) of two points given in degrees: 0 (same point) to 1 (antipodes)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    return math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2


def great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Metres between two points given in degrees."""
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(haversine_term(lat1, lon1, lat2, lon2), 1.0)))


def haversine_term_sql(lat_column, lon_column, lat: float, lon: float):
    """``haversine_term`` from a point to columns (degrees) as a SQL expression to order by (PostgreSQL;
    SQLite with its math functions, which ``sqlite_math`` adds where the build lacks them)."""
    phi2 = cast(lat_column, Float) * _RADIANS
    half_dphi = (phi2 - math.radians(lat)) / 2
    half_dlmb = (cast(lon_column, Float) * _RADIANS - math.radians(lon)) / 2
    return (func.sin(half_dphi) * func.sin(half_dphi)
            + literal(math.cos(math.radians(lat))) * func.cos(phi2) * func.sin(half_dlmb) * func.sin(half_dlmb))


def sqlite_math(dbapi_connection) -> None:
    """Give a SQLite connection sin and cos when its build has no math functions."""
    try:
        dbapi_connection.execute("SELECT sin(0), cos(0)").fetchone()
    except Exception:  # noqa: BLE001 - sqlite3.OperationalError: no such function
        for name, function in (("sin", math.sin), ("cos", math.cos)):
            dbapi_connection.create_function(name, 1, function, deterministic=True)
