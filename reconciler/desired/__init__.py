"""Desired state: the deployments, pools, queues and variables a repository asks for,
worked out from its project files as `prefect deploy` would. Pure."""
