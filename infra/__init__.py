"""Anycast network as code: the model, the Pulumi components and the clients around them."""
