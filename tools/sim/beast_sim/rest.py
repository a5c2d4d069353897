"""The six exchanges' public REST endpoints (ticker, instrument list), as the simulator serves them.

Paths are the real ones under `/<exchange>`, so a connector pointed at
`http://HOST:PORT/<exchange><real base path>` works unchanged.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trinity_beast.domain.assets import Instrument
from beast_sim.protocols import now_ms, rfc3339_us

if TYPE_CHECKING:
    from beast_sim.server import Simulator

# Kraken's REST result keys: legacy X/Z names for the oldest pairs, the altname otherwise.
KRAKEN_LEGACY = {"BTC": "XXBT", "ETH": "XETH", "LTC": "XLTC", "XRP": "XXRP", "XLM": "XXLM", "ETC": "XETC",
                 "XMR": "XXMR", "ZEC": "XZEC", "MLN": "XMLN", "REP": "XREP"}


def kraken_result_key(inst: Instrument) -> str:
    legacy = KRAKEN_LEGACY.get(inst.asset)
    if legacy:
        return f"{legacy}ZUSD"
    if inst.asset == "USDT":
        return "USDTZUSD"
    return inst.rest_symbol


def kraken_v1_base(asset: str) -> str:
    return {"BTC": "XBT", "DOGE": "XDG"}.get(asset, asset)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


Handler = Callable[["Simulator", Request], Awaitable[Response]]


def _endpoint(exchange: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Count the call and apply the exchange's misbehaviour mode before answering."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        sim.rest_calls[exchange] += 1
        mode = sim.mode(exchange)
        if mode == "down":
            return Response("503 Service Unavailable", status_code=503, media_type="text/plain")
        if mode == "silent":
            await asyncio.sleep(sim.rest_stall_s)
        if mode == "garbage":
            return Response(b"<html>\x00garbage", status_code=200, media_type="text/html")
        return await handler(sim, request)

    return endpoint


# ---- Coinbase ------------------------------------------------------------------------------


def _cb_product(sim: "Simulator", inst: Instrument) -> dict[str, Any]:
    last, _b, _a = sim.prices.quote(inst.asset, inst.quote, "coinbase")
    return {"product_id": inst.symbol, "price": last, "base_currency_id": inst.asset, "quote_currency_id": inst.quote,
            "product_type": "SPOT", "trading_disabled": False, "is_disabled": False, "status": "online"}


_CB_NOT_FOUND = {"error": "NOT_FOUND", "error_details": "ProductID is invalid", "message": "ProductID is invalid"}


async def cb_ticker(sim: "Simulator", request: Request) -> Response:
    inst = sim.rest_instrument("coinbase", request.path_params["product_id"])
    if inst is None:
        return _json(_CB_NOT_FOUND, 404)
    sim.ticker_calls[("coinbase", inst.asset)] += 1
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "coinbase")
    trade = {"trade_id": str(now_ms()), "product_id": inst.symbol, "price": last, "size": "0.01",
             "time": rfc3339_us(), "side": "BUY", "bid": "", "ask": ""}
    return _json({"trades": [trade], "best_bid": bid, "best_ask": ask})


async def cb_product(sim: "Simulator", request: Request) -> Response:
    inst = sim.rest_instrument("coinbase", request.path_params["product_id"])
    return _json(_cb_product(sim, inst)) if inst else _json(_CB_NOT_FOUND, 404)


async def cb_products(sim: "Simulator", request: Request) -> Response:
    products = [_cb_product(sim, i) for i in sim.listed("coinbase")]
    return _json({"products": products, "num_products": len(products)})


async def cb_time(sim: "Simulator", request: Request) -> Response:
    now = time.time()
    return _json({"iso": rfc3339_us(now), "epochSeconds": str(int(now)), "epochMillis": str(int(now * 1000))})


# ---- Kraken ----------------------------------------------------------------------------------


async def kraken_ticker(sim: "Simulator", request: Request) -> Response:
    pair = request.query_params.get("pair", "")
    inst = sim.rest_instrument("kraken", pair)
    if inst is None:
        return _json({"error": ["EQuery:Unknown asset pair"]})
    sim.ticker_calls[("kraken", inst.asset)] += 1
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "kraken")
    body = {"a": [ask, "1", "1.000"], "b": [bid, "2", "2.000"], "c": [last, "0.001"], "v": ["702.2", "3307.3"],
            "p": [last, last], "t": [33153, 135029], "l": [bid, bid], "h": [ask, ask], "o": last}
    return _json({"error": [], "result": {kraken_result_key(inst): body}})


async def kraken_pairs(sim: "Simulator", request: Request) -> Response:
    result = {}
    for inst in sim.listed("kraken"):
        base = kraken_v1_base(inst.asset)
        key = kraken_result_key(inst)
        result[key] = {"altname": inst.rest_symbol, "wsname": f"{base}/{inst.quote}",
                       "base": KRAKEN_LEGACY.get(inst.asset, base), "quote": "ZUSD" if inst.quote == "USD" else inst.quote,
                       "status": "online"}
    return _json({"error": [], "result": result})


# ---- Gemini ------------------------------------------------------------------------------------


def _gemini_bad(symbol: str) -> Response:
    return _json({"result": "error", "reason": "InvalidSymbol", "message": f"Supplied value '{symbol}' is not a valid symbol"}, 400)


async def gemini_pubticker(sim: "Simulator", request: Request) -> Response:
    sym = request.path_params["symbol"]
    inst = sim.rest_instrument("gemini", sym)
    if inst is None:
        return _gemini_bad(sym)
    sim.ticker_calls[("gemini", inst.asset)] += 1
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "gemini")
    return _json({"bid": bid, "ask": ask, "last": last,
                  "volume": {inst.asset: "3.54", inst.quote: "226620.2", "timestamp": now_ms()}})


async def gemini_v2_ticker(sim: "Simulator", request: Request) -> Response:
    sym = request.path_params["symbol"]
    inst = sim.rest_instrument("gemini", sym)
    if inst is None:
        return _gemini_bad(sym)
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "gemini")
    return _json({"symbol": inst.symbol, "open": last, "high": ask, "low": bid, "close": last,
                  "changes": [last] * 24, "bid": bid, "ask": ask})


async def gemini_symbols(sim: "Simulator", request: Request) -> Response:
    return _json([i.rest_symbol for i in sim.listed("gemini")])


async def gemini_details(sim: "Simulator", request: Request) -> Response:
    sym = request.path_params["symbol"]
    inst = sim.rest_instrument("gemini", sym)
    if inst is None:
        return _gemini_bad(sym)
    return _json({"symbol": inst.symbol, "base_currency": inst.asset, "quote_currency": inst.quote,
                  "tick_size": 1e-8, "quote_increment": 0.01, "min_order_size": "0.00001", "status": "open"})


# ---- Gate.io --------------------------------------------------------------------------------------


def _gate_row(sim: "Simulator", inst: Instrument) -> dict[str, Any]:
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "gateio")
    return {"currency_pair": inst.symbol, "last": last, "lowest_ask": ask, "highest_bid": bid,
            "change_percentage": "0.28", "base_volume": "3331.1", "quote_volume": "55137098.0",
            "high_24h": ask, "low_24h": bid}


async def gate_tickers(sim: "Simulator", request: Request) -> Response:
    pair = request.query_params.get("currency_pair")
    if pair is None:
        return _json([_gate_row(sim, i) for i in sim.listed("gateio")])
    inst = sim.rest_instrument("gateio", pair)
    if inst is None:
        return _json({"label": "INVALID_CURRENCY_PAIR", "message": f"Invalid currency pair {pair}"}, 400)
    sim.ticker_calls[("gateio", inst.asset)] += 1
    return _json([_gate_row(sim, inst)])


async def gate_pairs(sim: "Simulator", request: Request) -> Response:
    return _json([{"id": i.symbol, "base": i.asset, "quote": i.quote, "fee": "0.2", "min_quote_amount": "1",
                   "amount_precision": 4, "precision": 6, "trade_status": "tradable"} for i in sim.listed("gateio")])


# ---- Crypto.com -------------------------------------------------------------------------------------


def _cdc_row(sim: "Simulator", inst: Instrument) -> dict[str, Any]:
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "cryptocom")
    return {"h": ask, "l": bid, "a": last, "c": "0.0050", "b": bid, "k": ask, "i": inst.symbol,
            "v": "879.5024", "vv": "56290000.12", "oi": "0", "t": now_ms()}


async def cdc_tickers(sim: "Simulator", request: Request) -> Response:
    name = request.query_params.get("instrument_name")
    if name is None:
        data = [_cdc_row(sim, i) for i in sim.listed("cryptocom")]
    else:
        inst = sim.rest_instrument("cryptocom", name)
        if inst is None:
            return _json({"id": -1, "method": "public/get-tickers", "code": 10004, "message": "BAD_REQUEST: invalid instrument_name"}, 400)
        sim.ticker_calls[("cryptocom", inst.asset)] += 1
        data = [_cdc_row(sim, inst)]
    return _json({"id": -1, "method": "public/get-tickers", "code": 0, "result": {"data": data}})


async def cdc_instruments(sim: "Simulator", request: Request) -> Response:
    data = [{"symbol": i.symbol, "inst_type": "CCY_PAIR", "display_name": f"{i.asset}/{i.quote}", "base_ccy": i.asset,
             "quote_ccy": i.quote, "tradable": True} for i in sim.listed("cryptocom")]
    return _json({"id": -1, "method": "public/get-instruments", "code": 0, "result": {"data": data}})


# ---- OKX -------------------------------------------------------------------------------------------


def _okx_row(sim: "Simulator", inst: Instrument) -> dict[str, Any]:
    last, bid, ask = sim.prices.quote(inst.asset, inst.quote, "okx")
    return {"instType": "SPOT", "instId": inst.symbol, "last": last, "lastSz": "0.0002", "askPx": ask, "askSz": "1.5",
            "bidPx": bid, "bidSz": "0.23", "open24h": last, "high24h": ask, "low24h": bid, "volCcy24h": "525802090.6",
            "vol24h": "17602.1", "sodUtc0": last, "sodUtc8": last, "ts": str(now_ms())}


async def okx_ticker(sim: "Simulator", request: Request) -> Response:
    inst = sim.rest_instrument("okx", request.query_params.get("instId", ""))
    if inst is None:
        return _json({"code": "51001", "msg": "Instrument ID does not exist", "data": []})
    sim.ticker_calls[("okx", inst.asset)] += 1
    return _json({"code": "0", "msg": "", "data": [_okx_row(sim, inst)]})


async def okx_tickers(sim: "Simulator", request: Request) -> Response:
    return _json({"code": "0", "msg": "", "data": [_okx_row(sim, i) for i in sim.listed("okx")]})


async def okx_instruments(sim: "Simulator", request: Request) -> Response:
    data = [{"instType": "SPOT", "instId": i.symbol, "baseCcy": i.asset, "quoteCcy": i.quote, "state": "live",
             "tickSz": "0.0001", "lotSz": "0.0001", "minSz": "0.0001", "listTime": "1606468572000"} for i in sim.listed("okx")]
    return _json({"code": "0", "msg": "", "data": data})


_ROUTES: list[tuple[str, str, Handler]] = [
    ("coinbase", "/api/v3/brokerage/market/products/{product_id}/ticker", cb_ticker),
    ("coinbase", "/api/v3/brokerage/market/products/{product_id}", cb_product),
    ("coinbase", "/api/v3/brokerage/market/products", cb_products),
    ("coinbase", "/api/v3/brokerage/time", cb_time),
    ("kraken", "/0/public/Ticker", kraken_ticker),
    ("kraken", "/0/public/AssetPairs", kraken_pairs),
    ("gemini", "/v1/pubticker/{symbol}", gemini_pubticker),
    ("gemini", "/v2/ticker/{symbol}", gemini_v2_ticker),
    ("gemini", "/v1/symbols", gemini_symbols),
    ("gemini", "/v1/symbols/details/{symbol}", gemini_details),
    ("gateio", "/api/v4/spot/tickers", gate_tickers),
    ("gateio", "/api/v4/spot/currency_pairs", gate_pairs),
    ("cryptocom", "/exchange/v1/public/get-tickers", cdc_tickers),
    ("cryptocom", "/exchange/v1/public/get-instruments", cdc_instruments),
    ("okx", "/api/v5/market/ticker", okx_ticker),
    ("okx", "/api/v5/market/tickers", okx_tickers),
    ("okx", "/api/v5/public/instruments", okx_instruments),
]


def rest_routes() -> list[Route]:
    return [Route(f"/{exchange}{path}", _endpoint(exchange, handler), methods=["GET"]) for exchange, path, handler in _ROUTES]
