"""``python -m web.openapi``: print the API's OpenAPI document (the catalog's ids as plain strings)."""
import json

from web.openapi import document

print(json.dumps(document(), indent=2))
