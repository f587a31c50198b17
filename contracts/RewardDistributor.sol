// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @title OmniTensor reward distributor
/// @notice Holds OMNIT and pays a wallet against an EIP-712 voucher from the portal's claim
/// signer. Vouchers are cumulative: a voucher says how much `account` may have received in
/// total, and a claim pays the difference to what it already received. A replayed or older
/// voucher therefore pays nothing (and reverts), so no double claim is possible by
/// construction, whoever submits it: the tokens always go to `account`.
contract RewardDistributor is EIP712, Ownable, Pausable {
    using SafeERC20 for IERC20;

    bytes32 public constant CLAIM_TYPEHASH =
        keccak256("Claim(address account,uint256 cumulativeAmount,uint256 deadline)");

    IERC20 public immutable token;
    address public signer;
    mapping(address account => uint256) public claimed;

    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);
    event SignerChanged(address indexed previousSigner, address indexed newSigner);

    error ZeroAddress();
    error VoucherExpired(uint256 deadline);
    error InvalidSignature();
    error NothingToClaim(uint256 cumulativeAmount, uint256 alreadyClaimed);

    constructor(IERC20 token_, address signer_, address owner_)
        EIP712("OmniTensor RewardDistributor", "1")
        Ownable(owner_)
    {
        if (address(token_) == address(0) || signer_ == address(0)) revert ZeroAddress();
        token = token_;
        signer = signer_;
        emit SignerChanged(address(0), signer_);
    }

    /// @notice Pay `account` up to `cumulativeAmount` in total, as the signer's voucher allows.
    function claim(address account, uint256 cumulativeAmount, uint256 deadline, bytes calldata signature)
        external
        whenNotPaused
        returns (uint256 amount)
    {
        if (block.timestamp > deadline) revert VoucherExpired(deadline);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(CLAIM_TYPEHASH, account, cumulativeAmount, deadline))
        );
        (address recovered, ECDSA.RecoverError error_, ) = ECDSA.tryRecover(digest, signature);
        if (error_ != ECDSA.RecoverError.NoError || recovered != signer) revert InvalidSignature();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(cumulativeAmount, already);
        amount = cumulativeAmount - already;
        claimed[account] = cumulativeAmount;
        emit Claimed(account, amount, cumulativeAmount);
        token.safeTransfer(account, amount);
    }

    /// @notice Rotate the claim signer; vouchers of the previous signer stop working at once.
    function setSigner(address newSigner) external onlyOwner {
        if (newSigner == address(0)) revert ZeroAddress();
        emit SignerChanged(signer, newSigner);
        signer = newSigner;
    }

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }

    /// @notice The EIP-712 domain separator vouchers are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
