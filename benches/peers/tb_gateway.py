#!/usr/bin/env python3
"""Starts the ThingsBoard IoT Gateway with the configuration in $TB_GW_CONFIG_DIR, its update
check pointed at $PEERS_UPDATE_URL (the loopback stub of tb_server.py) instead of the vendor's
service, so that the run makes no connection off the machine."""

import os

from thingsboard_gateway.tb_utility import tb_updater

tb_updater.UPDATE_SERVICE_BASE_URL = os.environ["PEERS_UPDATE_URL"]

from thingsboard_gateway.gateway.tb_gateway_service import TBGatewayService  # noqa: E402

TBGatewayService(os.path.join(os.environ["TB_GW_CONFIG_DIR"], "tb_gateway.json"))
