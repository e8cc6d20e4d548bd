"""
The OpenAPI schema's generator (drf-spectacular): every operation lists the error
answers it can give, each with the exact `code`s core.api maps errors to.

Its own module: DRF imports core.api while it loads (the parser and throttle
settings), before drf-spectacular can be imported.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from core.api import BODY_ERROR_CODES, COMMON_ERROR_CODES, ERROR_DESCRIPTIONS, ERROR_EXAMPLES, merge_codes


class AutoSchema(SpectacularAutoSchema):
    """
    drf-spectacular's schema, plus every error answer an operation can give,
    each with the exact `code`s it carries. A view states its own codes per
    method in `error_codes` (e.g. `{"post": {"409": ["invalid_state"]}}`);
    the common ones are added here from what the operation is: reads a body,
    names an object, is paginated, is throttled.
    """

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if not operation:
            return operation
        tables = [COMMON_ERROR_CODES]
        parameters = {p.get("name") for p in operation.get("parameters", [])}
        if "{" in path or "page" in parameters:
            tables.append({"404": ["not_found"]})
        if "requestBody" in operation:
            tables.append(BODY_ERROR_CODES)
        if any(p.get("in") == "query" and p.get("name") != "page" for p in operation.get("parameters", [])):
            tables.append({"400": ["invalid"]})
        if getattr(self.view, "throttle_scopes", {}).get(method):
            tables.append({"429": ["throttled"]})
        tables.append(getattr(self.view, "error_codes", {}).get(method.lower(), {}))
        responses = operation.setdefault("responses", {})
        for status, codes in merge_codes(*tables).items():
            response = responses.setdefault(status, {"description": ERROR_DESCRIPTIONS.get(status, "An error.")})
            described = response.get("description") or ERROR_DESCRIPTIONS.get(status, "")
            response["description"] = f"{described} Codes: {', '.join(f'`{code}`' for code in codes)}."
            schema = {"allOf": [{"$ref": "#/components/schemas/Error"}, {"properties": {"code": {"enum": codes}}}]}
            content = {"schema": schema}
            examples = {code: {"value": ERROR_EXAMPLES[code]} for code in codes if code in ERROR_EXAMPLES}
            if examples:
                content["examples"] = examples
            response["content"] = {"application/json": content}
            if status == "429":
                response["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
                }
        for status, response in responses.items():
            # An error answer a view describes in its own words is still an Error.
            if status[0] in "45" and "content" not in response:
                response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        operation["responses"] = dict(sorted(responses.items()))
        return operation
