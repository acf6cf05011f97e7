"""The token endpoint's request and answer shapes (OAuth2 client credentials)."""

from __future__ import annotations

from rest_framework import serializers


class TokenInSerializer(serializers.Serializer):
    grant_type = serializers.ChoiceField(choices=["client_credentials"])
    client_id = serializers.CharField(max_length=64, required=False)
    client_secret = serializers.CharField(max_length=200, required=False)
    scope = serializers.CharField(max_length=200, required=False)


class TokenOutSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    scope = serializers.CharField()
