"""Properties of the calculator that must hold for any valid input (hypothesis)."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from carbon.footprint import dataset
from carbon.footprint.activities import Context
from carbon.footprint.calculator import calculate
from schemas.footprint import CABINS, DIETS, FUELS, FootprintIn, HostFootprintIn

DATA = dataset.load()
AIRPORTS = ["PEK", "PKX", "CTU", "TFU", "SHA", "PVG", "CAN", "KMG", "LHR", "JFK"]
CITIES = ["北京", "上海", "成都", "重庆", "Guangzhou", "Xi'an", "Lhasa"]
PROVINCES = st.sampled_from([None, "SC", "BJ", "GD", "XZ", "HK"])


def km(maximum: int):
    """Distances with one decimal place, at most half the limit so that doubling stays valid."""
    return st.integers(1, maximum * 10 // 2).map(lambda tenths: str(Decimal(tenths) / 10))


event_activity = st.one_of(
    st.fixed_dictionaries({"type": st.just("flight"), "route": st.lists(st.sampled_from(AIRPORTS), min_size=2,
                                                                         max_size=4, unique=True),
                           "round_trip": st.booleans(), "cabin": st.sampled_from(CABINS),
                           "passengers": st.integers(1, 4), "radiative_forcing": st.booleans()}),
    st.fixed_dictionaries({"type": st.just("flight"), "distance_km": km(20000), "cabin": st.sampled_from(CABINS),
                           "passengers": st.integers(1, 4)}),
    st.fixed_dictionaries({"type": st.just("rail"), "distance_km": km(5000),
                           "service": st.sampled_from(["high_speed", "conventional"]), "round_trip": st.booleans()}),
    st.fixed_dictionaries({"type": st.just("rail"), "from_city": st.sampled_from(CITIES),
                           "to_city": st.sampled_from(CITIES), "passengers": st.integers(1, 4)}),
    st.fixed_dictionaries({"type": st.sampled_from(["coach", "taxi"]), "distance_km": km(500)}),
    st.fixed_dictionaries({"type": st.sampled_from(["bus", "metro"]), "distance_km": km(200)}),
    st.fixed_dictionaries({"type": st.just("car"), "distance_km": km(5000), "fuel": st.sampled_from(FUELS)}),
    st.fixed_dictionaries({"type": st.just("hotel"), "nights": st.integers(1, 182),
                           "star_class": st.integers(1, 5)}),
    st.fixed_dictionaries({"type": st.just("meal"), "count": st.integers(1, 100), "diet": st.sampled_from(DIETS)}),
)
QUANTITIES = ("distance_km", "nights", "count", "passengers", "kwh_per_month", "m3_per_month", "km_per_year",
              "round_trips_per_year")


def compute(activities, kind="event", province=None, **context):
    body = FootprintIn().load({"kind": kind, "activities": activities})
    return calculate(kind, body["activities"], Context(province=province, **context), DATA)


def doubled(activities):
    """Every quantity times two. A flight's distance picks its DESNZ band (short or long haul), so
    twice a flight is twice the passengers, not twice as far."""
    def double(value):
        return value * 2 if isinstance(value, int) else str(Decimal(value) * 2)

    def quantities(activity):
        return ("passengers",) if activity["type"] == "flight" else QUANTITIES
    return [{key: (double(value) if key in quantities(activity) else value) for key, value in activity.items()}
            for activity in activities]


@settings(max_examples=150, deadline=None)
@given(st.lists(event_activity, min_size=1, max_size=8), PROVINCES)
def test_total_is_the_sum_of_line_items_and_never_negative(activities, province):
    result = compute(activities, province=province)
    assert result["total_exact"] == sum(line["kg"] for line in result["lines"])
    assert all(line["kg"] >= 0 for line in result["lines"])
    assert result["total_kg"] == result["total_exact"].quantize(Decimal("0.001")) or \
        abs(result["total_kg"] - result["total_exact"]) <= Decimal("0.0005")
    assert result["neutralize_kg"] >= result["total_exact"]


@settings(max_examples=150, deadline=None)
@given(st.lists(event_activity, min_size=1, max_size=6), PROVINCES)
def test_doubling_every_quantity_doubles_the_total(activities, province):
    once = compute(activities, province=province)
    twice = compute(doubled(activities), province=province)
    assert twice["total_exact"] == 2 * once["total_exact"]


@settings(max_examples=150, deadline=None)
@given(st.lists(event_activity, min_size=2, max_size=6), PROVINCES, st.randoms(use_true_random=False))
def test_order_of_activities_does_not_matter(activities, province, random):
    shuffled = list(activities)
    random.shuffle(shuffled)
    first, second = compute(activities, province=province), compute(shuffled, province=province)
    assert first["total_exact"] == second["total_exact"]
    assert sorted(line["kg"] for line in first["lines"]) == sorted(line["kg"] for line in second["lines"])


life_activity = st.one_of(
    st.fixed_dictionaries({"type": st.just("electricity"), "kwh_per_month": km(20000)}),
    st.fixed_dictionaries({"type": st.just("natural_gas"), "m3_per_month": km(2000)}),
    st.fixed_dictionaries({"type": st.just("water"), "m3_per_month": km(1000)}),
    st.fixed_dictionaries({"type": st.just("car"), "km_per_year": km(300000), "fuel": st.sampled_from(FUELS)}),
    st.fixed_dictionaries({"type": st.just("flights"), "round_trips_per_year": st.integers(0, 50)}),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(life_activity, min_size=1, max_size=6), PROVINCES, st.integers(1, 20))
def test_life_footprint_properties(activities, province, household_size):
    """Shares divided by the household are rounded to 10⁻⁸ kg, so doubling holds to that per line."""
    once = compute(activities, "life", province, household_size=household_size)
    twice = compute(doubled(activities), "life", province, household_size=household_size)
    assert once["total_exact"] == sum(line["kg"] for line in once["lines"]) >= 0
    divided = sum(1 for line in once["lines"] if line["divisor"] != 1)
    assert abs(twice["total_exact"] - 2 * once["total_exact"]) <= divided * Decimal("0.00000001")


host_activity = st.one_of(
    st.fixed_dictionaries({"type": st.just("venue_electricity"), "kwh": km(10_000_000)}),
    st.fixed_dictionaries({"type": st.just("catering"), "count": st.integers(1, 500_000),
                           "diet": st.sampled_from(DIETS)}),
    st.fixed_dictionaries({"type": st.just("material"), "material": st.sampled_from(["paper", "plastic"]),
                           "kg": st.integers(1, 500_000_000).map(lambda grams: str(Decimal(grams) / 1000))}),
    event_activity.filter(lambda activity: activity["type"] not in ("meal", "venue_share")),
)


def host_compute(activities, province=None):
    body = HostFootprintIn().load({"event_name": "年会", "activities": activities})
    return calculate("host", body["activities"], Context(province=province), DATA)


@settings(max_examples=150, deadline=None)
@given(st.lists(host_activity, min_size=1, max_size=8), PROVINCES)
def test_an_events_own_footprint_is_the_sum_of_its_lines_and_doubles_with_its_quantities(activities, province):
    """The organizer's kind (``host``) had no property: its venue, catering and materials lines too."""
    once, twice = host_compute(activities, province), host_compute(doubled_host(activities), province)
    assert once["total_exact"] == sum(line["kg"] for line in once["lines"]) >= 0
    assert twice["total_exact"] == 2 * once["total_exact"]


def doubled_host(activities):
    host_quantities = {"venue_electricity": ("kwh",), "catering": ("count",), "material": ("kg",)}
    own = [activity for activity in activities if activity["type"] in host_quantities]
    twice = {id(activity): {key: (value * 2 if isinstance(value, int) else str(Decimal(value) * 2))
                            if key in host_quantities[activity["type"]] else value for key, value in activity.items()}
             for activity in own}
    travel = doubled([activity for activity in activities if activity["type"] not in host_quantities])
    return [twice[id(activity)] if id(activity) in twice else travel.pop(0) for activity in activities]


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.tuples(st.just("event"), st.lists(event_activity, min_size=1, max_size=6)),
                 st.tuples(st.just("life"), st.lists(life_activity, min_size=1, max_size=6)),
                 st.tuples(st.just("host"), st.lists(host_activity, min_size=1, max_size=6))), PROVINCES)
@example(("event", [{"type": "metro", "distance_km": "143.9"}]), None)  # 4.00042 kg, shown 4.000: buy 5
@example(("host", [{"type": "metro", "distance_km": "143.9"}]), None)
def test_what_to_buy_is_whole_credit_units_covering_the_exact_total_and_the_grams_are_the_shown_kg(kinds, province):
    """What an order of the footprint buys (``neutralize_kg``) is a whole number of 1-kg units, never
    below the exact total and less than one unit above it; ``total_grams`` is ``total_kg`` in grams."""
    kind, activities = kinds
    result = host_compute(activities, province) if kind == "host" else compute(activities, kind, province)
    to_buy, exact = result["neutralize_kg"], result["total_exact"]
    assert to_buy == to_buy.to_integral_value() and exact <= to_buy < exact + 1
    assert result["total_grams"] == result["total_kg"] * 1000 == int(result["total_kg"] * 1000)
