"""The Slack face: the Bolt app and its listeners, Block Kit rendering, who is who in a Slack
Connect channel, the staff board, and exactly-once delivery into threads."""
