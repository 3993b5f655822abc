"""template.yaml as SAM's translator wants it: `Fn::ForEach` loops (AWS::LanguageExtensions)
expanded as CloudFormation expands them, then that transform left out. For the offline
checks (check_routes.py, check_iam.py); cfn-lint and `sam validate` expand the loops
themselves.

Only what the template uses: loops over a literal list, `${Id}` / `&{Id}` replaced in keys
and strings, `{"Ref": Id}` replaced by the value."""

from samtranslator.yaml_helper import yaml_parse


def _replace(node, name, value):
    if isinstance(node, str):
        return node.replace("${" + name + "}", value).replace("&{" + name + "}", value)
    if isinstance(node, list):
        return [_replace(n, name, value) for n in node]
    if isinstance(node, dict):
        if list(node) == ["Ref"] and node["Ref"] == name:
            return value
        return {_replace(k, name, value): _replace(v, name, value) for k, v in node.items()}
    return node


def expand(node):
    """`node` with every `Fn::ForEach::<loop>` key replaced by the keys its loop makes."""
    if isinstance(node, list):
        return [expand(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith("Fn::ForEach::"):
            name, collection, fragment = value
            if not isinstance(collection, list):
                raise SystemExit(f"{key}: only literal collections are expanded here")
            for item in collection:
                for k, v in expand(_replace(fragment, name, str(item))).items():
                    if k in out:
                        raise SystemExit(f"{key}: {k} made twice")
                    out[k] = v
        else:
            out[key] = expand(value)
    return out


def load(path="template.yaml"):
    template = expand(yaml_parse(open(path).read()))
    transform = template.get("Transform")
    if isinstance(transform, list):
        rest = [t for t in transform if t != "AWS::LanguageExtensions"]
        template["Transform"] = rest[0] if len(rest) == 1 else rest
    return template
