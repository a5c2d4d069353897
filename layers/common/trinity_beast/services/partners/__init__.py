"""Partner onboarding: AWS customers who connect privately (PrivateLink TCP, peering UDP).

`service` (what an admin does, with its audit trail), `wizard` (the AWS CLI commands for
both sides) and `ec2` (the one boto3 adapter). Records and validation live in
`domain.partners`; the routes in `transports.http.partners`.
"""
