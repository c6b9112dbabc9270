"""The model layer: endpoint, pooled client, streamed requests, pricing, budget, offline model."""
