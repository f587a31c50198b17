// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title Chainlink's price feed interface (AggregatorV3Interface), as the portal reads it
/// @notice The portal reads a token price feed through this ABI only (rewards.prices):
///         `decimals()` and `latestRoundData()` / `getRoundData(roundId)`; `answer` is the price
///         of one token in the feed's currency, scaled by 10^decimals. Declared here, with the
///         same signatures as Chainlink's, so the artifact needs no extra npm package.
interface AggregatorV3Interface {
    function decimals() external view returns (uint8);

    function description() external view returns (string memory);

    function version() external view returns (uint256);

    function getRoundData(uint80 _roundId)
        external
        view
        returns (
            uint80 roundId,
            int256 answer,
            uint256 startedAt,
            uint256 updatedAt,
            uint80 answeredInRound
        );

    function latestRoundData()
        external
        view
        returns (
            uint80 roundId,
            int256 answer,
            uint256 startedAt,
            uint256 updatedAt,
            uint80 answeredInRound
        );
}
