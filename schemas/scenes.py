from __future__ import annotations

from datetime import date
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from carbon.footprint import dataset
from carbon.scenes.codes import CHANNEL_PATTERN, CODE_PATTERN
from carbon.scenes.models import KINDS, STATUSES
from schemas.common import Kilograms, Money, Text
from schemas.footprint import Quantity

PROVINCES = sorted(dataset.load().provinces)
COORDINATE_PLACES = Decimal("0.000001")  # about 0.1 m; scenes.latitude/longitude are Numeric(9, 6)


class Coordinate(Quantity):
    """Degrees within ±``limit`` as a number or a string, rounded to 6 places; never NaN or infinite."""

    def __init__(self, limit: int, **kwargs):
        super().__init__(maximum=limit, minimum=Decimal(-limit), exclusive_minimum=False, places=20, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).quantize(COORDINATE_PLACES)


class Day(fields.Field):
    """A calendar day, ``YYYY-MM-DD``, or ``today`` (in China, Asia/Shanghai)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata = {"type": "string", "pattern": r"^(today|\d{4}-\d{2}-\d{2})$", "example": "2021-09-07",
                         **self.metadata}

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "today":
            return value
        if not isinstance(value, str) or len(value) != 10:
            raise ValidationError("需为 YYYY-MM-DD 或 today / Must be YYYY-MM-DD or today.")
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError("需为 YYYY-MM-DD 或 today / Must be YYYY-MM-DD or today.") from exc


class PresetActivity(Schema):
    type = Text(required=True)
    defaults = fields.Dict(keys=Text(), load_default=dict)


class Preset(Schema):
    activities = fields.List(fields.Nested(PresetActivity), required=True, validate=validate.Length(0, 12))


class SceneFields(Schema):
    name_zh = Text(validate=validate.Length(1, 128))
    name_en = Text(validate=validate.Length(0, 160))
    description = Text(validate=validate.Length(0, 4000))
    city = Text(validate=validate.Length(0, 64))
    province = Text(allow_none=True, validate=validate.OneOf(PROVINCES),
                    metadata={"description": "province code, e.g. SC; sets the electricity factor"})
    starts_on = fields.Date(allow_none=True)
    ends_on = fields.Date(allow_none=True)
    expected_attendance = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 1_000_000))
    preset = fields.Nested(Preset, metadata={"description": "activities to ask for and their defaults"})
    project_ids = fields.List(Text(), validate=validate.Length(0, 10),
                              metadata={"description": "credit projects offered (ids from GET /api/v1/projects)"})
    venue_kwh = Quantity(maximum=100_000_000, allow_none=True,
                         metadata={"description": "the venue's electricity for the event, kWh"})
    organizer_pledges_venue = fields.Boolean(
        metadata={"description": "true: the organizer neutralizes the venue itself; guests are not asked to"})
    pledge_note = Text(validate=validate.Length(0, 256))
    latitude = Coordinate(90, allow_none=True, metadata={"description": "the venue's latitude, degrees (GCJ-02 "
                                                                        "as wx.getLocation gives it); for search"})
    longitude = Coordinate(180, allow_none=True, metadata={"description": "the venue's longitude, degrees"})
    slug = Text(validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{2,47}$"))


class SceneCreateIn(SceneFields):
    kind = Text(required=True, validate=validate.OneOf(KINDS))
    name_zh = Text(required=True, validate=validate.Length(1, 128))
    code = Text(validate=validate.Regexp(CODE_PATTERN.pattern),
                metadata={"description": "4-12 of a-z 0-9; random when not given"})


class ScenePatchIn(SceneFields):
    status = Text(validate=validate.OneOf(STATUSES))


class ProjectBrief(Schema):
    id = fields.String(attribute="public_id")
    registry = fields.String(attribute="registry_name")
    name_zh = fields.String()
    name_en = fields.String()
    methodology = fields.String()
    location = fields.String()
    description = fields.String()
    photos = fields.List(fields.String())
    price_per_tonne = Money()
    unit_kg = Kilograms()


class ChannelOut(Schema):
    slug = fields.String()
    label = fields.String()
    scene_string = fields.Method("_scene_string", metadata={"description": "what the printed code carries"})
    wxacode_fetched_at = fields.DateTime(allow_none=True)
    wxacode_options = fields.Dict(allow_none=True)

    def _scene_string(self, channel):
        from carbon.scenes.codes import scene_string

        return scene_string(channel.scene.code, channel.slug)


class PublicScene(Schema):
    """What guests see of a scene."""

    id = fields.String(attribute="public_id")
    code = fields.String()
    slug = fields.String()
    kind = fields.String()
    status = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    description = fields.String()
    city = fields.String()
    province = fields.String(allow_none=True)
    starts_on = fields.Date(allow_none=True)
    ends_on = fields.Date(allow_none=True)
    expected_attendance = fields.Integer(allow_none=True)
    latitude = fields.Decimal(as_string=True, allow_none=True)
    longitude = fields.Decimal(as_string=True, allow_none=True)


class SceneOut(PublicScene):
    """What its organizers see."""

    preset = fields.Dict()
    projects = fields.List(fields.Nested(ProjectBrief))
    venue_kwh = fields.Decimal(as_string=True, allow_none=True)
    organizer_pledges_venue = fields.Boolean()
    pledge_note = fields.String()
    channels = fields.List(fields.Nested(ChannelOut))
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ScenesOut(Schema):
    items = fields.List(fields.Nested(SceneOut))


class ChannelIn(Schema):
    slug = Text(required=True, validate=validate.Regexp(CHANNEL_PATTERN.pattern),
                metadata={"description": "1-12 of a-z 0-9 -, e.g. door, badge, t12"})
    label = Text(load_default="", validate=validate.Length(0, 64))


class ChannelQuery(Schema):
    channel = Text(load_default="", metadata={"description": "channel slug; empty for the default"})


class PosterQuery(ChannelQuery):
    source = Text(load_default="wxacode", validate=validate.OneOf(("wxacode", "qrcode")))


class WxaCodeIn(Schema):
    channel = Text(load_default="")
    page = Text(validate=validate.Length(1, 128))
    width = fields.Integer(strict=True, validate=validate.Range(280, 1280))
    env_version = Text(validate=validate.OneOf(("release", "trial", "develop")))
    check_path = fields.Boolean()
    regenerate = fields.Boolean(load_default=False)


class Progress(Schema):
    """A scene's live progress, as guests see it."""

    visits = fields.Integer()
    footprints = fields.Integer()
    kg_neutralized = Kilograms()
    money_raised = Money()


class Counters(Progress):
    logins = fields.Integer()


class ChannelCounters(Counters):
    channel = fields.String()
    label = fields.String()


class DayCounters(Counters):
    day = fields.Date()


class StatsOut(Schema):
    scene = fields.String()
    totals = fields.Nested(Counters)
    by_channel = fields.List(fields.Nested(ChannelCounters))
    by_day = fields.List(fields.Nested(DayCounters))


class ResolveQuery(Schema):
    scene = Text(required=True, validate=validate.Length(1, 200),
                 metadata={"description": "query.scene as the mini-program received it (encoded or not)"})


class SceneSearchQuery(Schema):
    q = Text(load_default="", validate=validate.Length(0, 64),
             metadata={"description": "words (all must match) of the Chinese or English name, the organizer or the "
                                      "city: characters, simplified or traditional, pinyin or its initials"})
    kind = Text(validate=validate.OneOf(KINDS))
    city = Text(validate=validate.Length(1, 64), metadata={"description": "成都 or 成都市, simplified or traditional"})
    date = Day(metadata={"description": "running that day (a scene without dates runs every day)"})
    lat = Coordinate(90, metadata={"description": "the guest's latitude: nearest first (with lng)"})
    lng = Coordinate(180, metadata={"description": "the guest's longitude (with lat)"})
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 50))

    @validates_schema
    def _both_or_neither(self, data, **kwargs):
        if ("lat" in data) != ("lng" in data):
            missing = "lng" if "lat" in data else "lat"
            raise ValidationError("lat 与 lng 需同时提供 / Give lat and lng together.", missing)


class FoundScene(PublicScene):
    organizer = fields.String(metadata={"description": "the organizing organization's name"})
    distance_m = fields.Integer(allow_none=True, metadata={"description": "metres from the given location (great "
                                                                          "circle); null without one"})
    scene_string = fields.String(metadata={"description": "open it with GET /api/v1/scenes/resolve?scene= (and "
                                                          "pass it on to footprints and orders) as a scanned code: "
                                                          "counted under the channel search"})


class SceneSearchOut(Schema):
    items = fields.List(fields.Nested(FoundScene))
    page = fields.Integer()
    limit = fields.Integer()
    has_more = fields.Boolean()


class PledgeOut(Schema):
    venue_kwh = fields.Decimal(as_string=True, allow_none=True)
    note = fields.String()


class ResolveOut(Schema):
    scene = fields.Nested(PublicScene)
    channel = fields.Dict()
    preset = fields.Dict(metadata={"description": "{kind, activities: [{type, defaults}]}"})
    offer = fields.List(fields.Nested(ProjectBrief))
    pledge = fields.Nested(PledgeOut, allow_none=True)
    progress = fields.Nested(Progress)


class ProjectsOut(Schema):
    items = fields.List(fields.Nested(ProjectBrief))
