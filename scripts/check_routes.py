"""`make validate`: the HTTP API that SAM will really create, checked offline.

Runs SAM's own translator (samtranslator, from aws-sam-cli in .local/venv) over template.yaml
and checks the API it generates: every operation of openapi.yaml is routed to the function
built from the crate of the same name in the watch router of Cargo.toml, every path also has
an ANY route to the fallback, $default goes to the fallback, and nothing else is routed.
"""

import os
import re
import sys

import yaml
from samtranslator.translator.transform import transform
from template import load as load_template

os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")


class NoManagedPolicies:
    def load(self):
        return {}


def main() -> int:
    template = load_template()
    binaries = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            binaries[name] = resource["Metadata"]["BuildProperties"]["Binary"]
            # The translator wants an S3 location; `sam build` puts one there.
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    out = transform(template, {}, NoManagedPolicies())
    apis = [r for r in out["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    if len(apis) != 1:
        print(f"expected one HTTP API, found {len(apis)}")
        return 1
    routed = {}
    for path, methods in apis[0]["Properties"]["Body"]["paths"].items():
        for method, operation in methods.items():
            if method == "parameters":
                continue
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            resource = re.search(r"\$\{(\w+)\.Arn\}", uri).group(1)
            method = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            routed[(method, path)] = binaries[resource]

    router = open("Cargo.toml").read()
    expected = {}
    document = yaml.safe_load(open("openapi.yaml"))
    for path, methods in document["paths"].items():
        block = router[router.index(f'"{path}" = [') :]
        block = block[: block.index("\n]")]
        for method in methods:
            if method == "parameters":
                continue
            function = re.search(rf'method = "{method.upper()}", function = "([\w-]+)"', block)
            expected[(method.upper(), path)] = function.group(1) if function else "(none)"
        expected[("ANY", path)] = "fallback"
    expected[("ANY", "$default")] = "fallback"

    problems = [
        f"{m} {p}: SAM routes it to {routed.get((m, p), '(nothing)')}, expected {f}"
        for (m, p), f in sorted(expected.items())
        if routed.get((m, p)) != f
    ]
    problems += [f"{m} {p}: routed by SAM, not in openapi.yaml" for (m, p) in sorted(set(routed) - set(expected))]
    for problem in problems:
        print(problem)
    if not problems:
        print(f"template.yaml: SAM creates {len(routed)} routes, each to the expected function")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
