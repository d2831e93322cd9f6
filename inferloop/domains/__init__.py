"""The two domains, emails (spam) and transactions (fraud): schemas and models."""
