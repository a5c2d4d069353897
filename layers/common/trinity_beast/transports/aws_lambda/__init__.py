"""AWS Lambda adapters: API Gateway events to the same services the servers use."""
