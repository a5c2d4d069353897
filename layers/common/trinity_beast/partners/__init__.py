"""Partner onboarding: AWS customers who connect privately (PrivateLink TCP, peering UDP).

`model` (records, states, validation), `cidr` (address rules), `wizard` (the AWS CLI
commands for both sides), `ec2` (the one boto3 adapter), `service` (what an admin does,
with its audit trail) and `api` (the routes, shared by the LRS and the partners Lambda).
Kept import-light: config.py imports `ids` from here.
"""
