"""Blue-green promotion of a route's target: gates, canary steps, automatic rollback, history."""
