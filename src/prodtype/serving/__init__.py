"""The service's use cases (predict, review, users, storage, audit, login): plain functions used by the API,
the web pages and the command line."""
