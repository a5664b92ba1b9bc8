"""`supportbot bench` and the local stand-ins for Slack's Web API and Anthropic's Messages API it
(and the tests) run against: they speak the real protocols on 127.0.0.1, and Slack's rate limits."""
