"""EIP-712 claim vouchers, exactly as RewardDistributor.sol checks them (DESIGN.md "Claims").

Domain: name "OmniTensor RewardDistributor", version "1", the chain id and the distributor's
address. Type: Claim(address account, uint256 cumulativeAmount, uint256 deadline).
"""

from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

DOMAIN_NAME = "OmniTensor RewardDistributor"
DOMAIN_VERSION = "1"
CLAIM_TYPES = {
    "Claim": [
        {"name": "account", "type": "address"},
        {"name": "cumulativeAmount", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


@dataclass(frozen=True)
class Voucher:
    chain_id: int
    distributor: str
    account: str
    cumulative_wei: int
    deadline: int

    def typed_data(self) -> dict:
        return {
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": self.chain_id,
                "verifyingContract": to_checksum_address(self.distributor),
            },
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                **CLAIM_TYPES,
            },
            "primaryType": "Claim",
            "message": {
                "account": to_checksum_address(self.account),
                "cumulativeAmount": self.cumulative_wei,
                "deadline": self.deadline,
            },
        }

    def sign(self, signer_key: str) -> str:
        """The signer's 65-byte signature (r, s, v), 0x-hex."""
        signable = encode_typed_data(full_message=self.typed_data())
        signature = Account.sign_message(signable, signer_key).signature
        return "0x" + signature.hex().removeprefix("0x")

    def signer_of(self, signature: str) -> str:
        """The address that made `signature` over this voucher."""
        signable = encode_typed_data(full_message=self.typed_data())
        return Account.recover_message(signable, signature=signature)
