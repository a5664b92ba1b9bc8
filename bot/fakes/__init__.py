"""Local stand-ins for Slack's Web API and Anthropic's Messages API, on 127.0.0.1.

The tests drive the real clients against them, and `supportbot bench` uses them to measure the
bot without a network: they speak the real protocols (and Slack's rate limits), nothing more.
"""
