"""What every service needs: settings, logging, telemetry, gRPC bootstrap, auth metadata, errors."""
