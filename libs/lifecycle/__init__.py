"""Model lifecycle (docs/lifecycle.md): registry and promotion gates, shadow and canary, comparison on
radiologist feedback, rollback, drift monitoring without labels, bias audit."""
