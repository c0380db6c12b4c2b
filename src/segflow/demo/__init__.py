"""The demo: a simulated e-commerce business driven through segflow's real HTTP API."""
