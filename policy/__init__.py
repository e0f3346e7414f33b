"""The platform's CrossGuard policy pack: `pulumi preview --stack prod --policy-pack policy` (see docs/policy.md)."""
