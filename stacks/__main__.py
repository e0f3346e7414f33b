"""`python -m stacks`: print docs/configuration.md (every stack setting, generated from stacks/settings.py)."""

from stacks.settings import PROJECT, settings_table

HEADER = f"""# Configuration

Every key the program reads, generated from `stacks/settings.py` (`make docs`; a test fails when this
file is stale). Keys live under the `{PROJECT}:` namespace in `Pulumi.<stack>.yaml`; set them with
`pulumi config set --stack <stack> <key> <value>` (objects and lists: a JSON value, e.g.
`pulumi config set serving.aliases '["champion","challenger"]'`, or YAML in the stack file; not `--path`,
since the keys themselves contain dots).
Defaults marked dev/prod depend on `environment` (default: the stack name). Secrets must be set with
`pulumi config set --secret`; a secret found in plaintext is an error. An unknown key is an error.
"""

if __name__ == "__main__":
    print(HEADER)
    print(settings_table())
