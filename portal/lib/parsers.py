"""The JSON parser DRF uses for `request.data` (settings REST_FRAMEWORK), with our limits."""

from django.conf import settings
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser, refusing a body nested deeper than `json_bodies.MAX_JSON_DEPTH` before
    parsing it (400 `invalid_json`) and one past DATA_UPLOAD_MAX_MEMORY_SIZE (413), which
    DRF's own parser reads whole whatever its size."""

    def parse(self, stream, media_type=None, parser_context=None):
        # Imported here: DRF imports this module while its own views module is half loaded.
        from portal.lib.errors import ApiError
        from portal.lib.json_bodies import loads

        encoding = get_encoding(parser_context or {})
        cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = b"" if stream is None else stream.read() if cap is None else stream.read(cap + 1)
        if cap is not None and len(raw) > cap:
            raise ApiError(413, "body_too_large", f"The body is larger than {cap} bytes.")
        parse_constant = json.strict_constant if self.strict else None
        return loads(raw, encoding, parse_constant=parse_constant)
