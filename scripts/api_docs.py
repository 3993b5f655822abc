"""`make api-docs`: the API reference page, built from openapi.yaml with Scalar (the npm package
`@scalar/api-reference`, whose standalone bundle scripts/deps.sh puts in .local/docs-tools):
a folder with the page (the contract inside it) and the bundle beside it, which opens from
disk and fetches nothing from anywhere (no fonts, no telemetry, no "try it" proxy). Also
writes the operations the browser check (check_api_docs.mjs) expects to see.

Usage: python scripts/api_docs.py <out dir>"""

import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".local/docs-tools/scalar/standalone.js"
METHODS = ("get", "put", "post", "patch", "delete")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>members-api: API reference</title>
</head>
<body>
<div id="app"></div>
<script src="standalone.js"></script>
<script>
Scalar.createApiReference("#app", {configuration});
</script>
</body>
</html>
"""


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    configuration = {
        "content": spec,
        # Nothing from elsewhere: the system's fonts, no proxy for "try it", no telemetry.
        "withDefaultFonts": False,
        "hideClientButton": True,
        "telemetry": False,
        "agent": {"disabled": True},
        "showDeveloperTools": "never",
        "defaultOpenAllTags": True,
    }
    # No `<` inside the script element: nothing in the contract can end it early.
    page = PAGE.replace("{configuration}", json.dumps(configuration).replace("<", "\\u003c"))
    (out / "index.html").write_text(page)
    shutil.copyfile(BUNDLE, out / "standalone.js")
    operations = [
        {"method": method.upper(), "path": path, "operationId": op.get("operationId"), "summary": op.get("summary")}
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]
    (out / "operations.json").write_text(json.dumps(operations, indent=1))
    print(f"api docs: {out / 'index.html'} ({len(operations)} operations); open it in a browser")


if __name__ == "__main__":
    main()
