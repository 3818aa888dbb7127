"""`reconcile daemon`: watch git repositories and keep the store in step with them."""
