"""Budgets where the calls are made: the provider SDKs (``wrap``) and LiteLLM (``litellm``)."""
