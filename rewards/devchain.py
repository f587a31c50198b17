"""The demo's local chain: a real EVM (py-evm through eth-tester) behind JSON-RPC on 127.0.0.1.

`make run` starts it as the `chain` process (`manage.py devchain`) and points web, worker and beat
at it with the variables `env()` gives (`manage.py devchain --print-env`). Everything is
deterministic: the keys are derived from public phrases (worthless, and the same on every
machine), the owner deploys the OMNIT TestToken with its nonce 0 and the RewardDistributor with
its nonce 1, so their addresses are known before the chain runs. At start it funds the owner and
the claim relayer with ETH from eth-tester's dev accounts, deploys, and gives the distributor
half the OMNIT supply. Every transaction is mined at once, and a block is mined every
`block_time` seconds besides, so that confirmations advance and vouchers' deadlines pass for the
watcher as on a public chain.

The chain lives in memory: every start is a new chain from genesis. `forget_previous_chain` then
brings the portal's records in line with it (DEBUG only; see there).
"""

import ast
import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import rlp
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_canonical_address, to_checksum_address

log = logging.getLogger("rewards.devchain")

CHAIN_ID = 31337  # the usual local-chain id wallets know
CONFIRMATIONS = 2
DEFAULT_PORT = 8545
BLOCK_TIME_S = 2
SUPPLY = 10**9 * 10**18  # OMNIT, in wei
DISTRIBUTOR_FUNDS = SUPPLY // 2
OWNER_ETH = 1_000 * 10**18
RELAYER_ETH = 100 * 10**18


def _key(name: str) -> str:
    # Public and worthless: anyone can derive it. The chain refuses to run without DEBUG.
    return "0x" + keccak(text=f"omnitensor-devchain-{name}").hex()


def create_address(sender: str, nonce: int) -> str:
    """The address of the contract `sender` deploys with `nonce`."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender), nonce]))[12:])


OWNER_KEY = _key("owner")
SIGNER_KEY = _key("signer")
RELAYER_KEY = _key("relayer")
OWNER = Account.from_key(OWNER_KEY).address
SIGNER = Account.from_key(SIGNER_KEY).address
RELAYER = Account.from_key(RELAYER_KEY).address
TOKEN_ADDRESS = create_address(OWNER, 0)
DISTRIBUTOR_ADDRESS = create_address(OWNER, 1)


def env(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> dict[str, str]:
    """The portal's variables for this chain (web, worker and beat need the same)."""
    return {
        "CHAIN_ID": str(CHAIN_ID),
        "DISTRIBUTOR_ADDRESS": DISTRIBUTOR_ADDRESS,
        "OMNIT_TOKEN_ADDRESS": TOKEN_ADDRESS,
        "CLAIM_SIGNER_KEY": SIGNER_KEY,
        "CLAIM_RELAYER_KEY": RELAYER_KEY,
        "WEB3_PROVIDER_URI": f"http://{host}:{port}",
        "CHAIN_CONFIRMATIONS": str(CONFIRMATIONS),
        "DISTRIBUTOR_DEPLOY_BLOCK": "0",
    }


# --- JSON-RPC encoding ------------------------------------------------------------------------


def to_rpc(value, key: str = ""):
    """A result as JSON-RPC writes it: quantities and bytes as 0x-hex, camelCase keys kept."""
    if value is None or isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {k: to_rpc(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rpc(v) for v in value]
    return str(value)


def _revert_error(exc: Exception) -> dict:
    """eth-tester's TransactionFailed as a node reports a revert: code 3 with the revert data."""
    message = str(exc.args[0]) if exc.args else str(exc)
    _, _, rest = message.partition("execution reverted: ")
    if rest.startswith(("b'", 'b"')):
        data = ast.literal_eval(rest)
    elif rest:
        data = bytes.fromhex("08c379a0") + abi_encode(["string"], [rest])  # Error(string)
    else:
        data = b""
    return {"code": 3, "message": "execution reverted", "data": "0x" + data.hex()}


class DevChain:
    """py-evm with the contracts deployed; `request` answers one JSON-RPC call (thread-safe)."""

    def __init__(self, chain_id: int = CHAIN_ID):
        from eth.chains.base import ChainContext
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider, Web3

        backend = PyEVMBackend()
        # eth-tester's chain id is fixed; the CHAINID opcode (EIP-712 domains) reads the context.
        type(backend.chain).chain_id = chain_id
        backend.chain.chain_context = ChainContext(chain_id)
        self.chain_id = chain_id
        self.tester = EthereumTester(backend)
        self.provider = EthereumTesterProvider(self.tester)
        self.w3 = Web3(self.provider)
        self._call = self.provider.request_func(self.w3, self.w3.middleware_onion)
        self.lock = threading.RLock()

    # -- setup --

    def start(self) -> "DevChain":
        """Fund the owner and the relayer, deploy the token and the distributor, fund it."""
        funder = self.w3.eth.accounts[0]
        for address, value in ((OWNER, OWNER_ETH), (RELAYER, RELAYER_ETH)):
            self.w3.eth.send_transaction({"from": funder, "to": address, "value": value})
        token = self.deploy("TestToken", "OmniTensor", "OMNIT", SUPPLY)
        distributor = self.deploy("RewardDistributor", token.address, SIGNER, OWNER)
        assert (token.address, distributor.address) == (TOKEN_ADDRESS, DISTRIBUTOR_ADDRESS)
        self.token, self.distributor = token, distributor
        self.send_as_owner(
            token.functions.transfer(DISTRIBUTOR_ADDRESS, DISTRIBUTOR_FUNDS).build_transaction(
                {"from": OWNER}
            )
        )
        return self

    def send_as_owner(self, tx: dict) -> dict:
        """`tx` signed by the owner key and sent raw, as any wallet would; its receipt."""
        tx = {k: v for k, v in tx.items() if k not in ("from", "gasPrice", "chainId", "nonce")}
        if "gas" not in tx:
            tx["gas"] = self.w3.eth.estimate_gas({"from": OWNER, **tx})
        base_fee = self.w3.eth.get_block("latest")["baseFeePerGas"]
        tx.update(
            nonce=self.w3.eth.get_transaction_count(OWNER, "pending"),
            chainId=self.chain_id,
            maxFeePerGas=2 * base_fee + 10**9,
            maxPriorityFeePerGas=10**9,
        )
        signed = Account.sign_transaction(tx, OWNER_KEY)
        with self.lock:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise RuntimeError(f"devchain: transaction {tx_hash.hex()} reverted")
        return receipt

    def deploy(self, name: str, *args):
        from rewards import chain

        factory = self.w3.eth.contract(abi=chain.abi(name), bytecode=chain.bytecode(name))
        receipt = self.send_as_owner({"data": factory.constructor(*args).data_in_transaction})
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=chain.abi(name))

    # -- serving --

    def request(self, method: str, params) -> dict:
        """One JSON-RPC call: {"result": …} or {"error": {code, message[, data]}}."""
        from eth_tester.exceptions import TransactionFailed

        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method == "net_version":
            return {"result": str(self.chain_id)}
        if method in ("evm_mine", "evm_snapshot", "evm_revert", "evm_increaseTime"):
            return {"error": {"code": -32601, "message": f"{method} is not offered"}}
        try:
            with self.lock:
                response = self._call(method, list(params or []))
        except TransactionFailed as exc:
            return {"error": _revert_error(exc)}
        except Exception as exc:  # noqa: BLE001 - a node answers every failure with an error
            return {"error": {"code": -32000, "message": f"{type(exc).__name__}: {exc}"}}
        if "error" in response:
            return {"error": dict(response["error"])}
        return {"result": to_rpc(response.get("result"))}

    def mine(self) -> None:
        with self.lock:
            self.tester.mine_blocks(1)

    def mine_every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        def run():
            while not stop.wait(seconds):
                self.mine()

        thread = threading.Thread(target=run, name="devchain-miner", daemon=True)
        thread.start()
        return thread


def answer(devchain: DevChain, body: bytes) -> bytes:
    """The HTTP body answering a JSON-RPC request body (one call or a batch)."""
    try:
        payload = json.loads(body)
    except ValueError:
        reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        return json.dumps(reply).encode()

    def one(call):
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid"}}
        return {"jsonrpc": "2.0", "id": call.get("id"), **devchain.request(
            call["method"], call.get("params")
        )}  # fmt: skip

    reply = [one(c) for c in payload] if isinstance(payload, list) else one(payload)
    return json.dumps(reply).encode()


def make_server(devchain: DevChain, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            # Wallet extensions call local nodes from pages of their own; no web page may
            # (its keys are public: any site could spend from them).
            origin = self.headers.get("Origin", "")
            if origin.startswith(("chrome-extension://", "moz-extension://")):
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self):
            self._send(204)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > 4 * 1024 * 1024:
                self._send(413)
                return
            self._send(200, answer(devchain, self.rfile.read(length)))

        def log_message(self, format, *args):
            log.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def forget_previous_chain(devchain: DevChain) -> dict:
    """Bring the portal's records in line with a chain that has just started from genesis.

    The same distributor address on the same chain id held claims in an earlier run of the
    devchain, which is gone. So: the watcher's cursor is dropped (it reads the new chain from
    block 0 instead of stopping at a "reorg"); open vouchers expire (their chain is gone, they
    can never pay; their amounts are claimable again); and what the portal had confirmed as paid
    to each wallet is paid again on the new chain, by vouchers of the devchain's signer, so that
    the contract's running totals match the portal's and nothing is paid twice from here on.
    DEBUG only: the devchain refuses to run otherwise.
    """
    from django.db.models import Q
    from django.utils import timezone

    from rewards import chain
    from rewards.models import ChainCursor, Claim, ClaimEvent
    from rewards.vouchers import Voucher

    where = Q(chain_id=devchain.chain_id, distributor=DISTRIBUTOR_ADDRESS)
    ChainCursor.objects.filter(where).delete()
    expired = (
        Claim.objects.filter(where, status__in=(Claim.Status.ISSUED, Claim.Status.SUBMITTED))
        .update(status=Claim.Status.EXPIRED, expired_at=timezone.now())
    )  # fmt: skip
    totals: dict[str, int] = {}
    for account, cumulative in ClaimEvent.objects.filter(where).values_list(
        "account", "cumulative_wei"
    ):
        totals[account] = max(totals.get(account, 0), int(cumulative))
    deadline = devchain.w3.eth.get_block("latest")["timestamp"] + 3600
    for account, cumulative in totals.items():
        voucher = Voucher(devchain.chain_id, DISTRIBUTOR_ADDRESS, account, cumulative, deadline)
        data = chain.encode_claim_call(account, cumulative, deadline, voucher.sign(SIGNER_KEY))
        devchain.send_as_owner({"to": DISTRIBUTOR_ADDRESS, "data": data})
    return {"expired": expired, "repaid": len(totals)}
