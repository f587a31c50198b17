// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";

/// @title A price feed for tests and local chains, answering like a Chainlink aggregator
/// @notice Its owner sets rounds by hand: `setRound` writes any round (ids need not be
///         consecutive, answers may be zero or negative, timestamps anything) and makes it the
///         latest when its id is the highest so far. Unknown rounds revert with `NoDataPresent`,
///         as Chainlink's do. Not for production.
contract TestPriceFeed is AggregatorV3Interface {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
        uint80 answeredInRound;
        bool exists;
    }

    address public immutable owner;
    uint8 public immutable override decimals;
    string public override description;
    uint80 public latestRound;
    mapping(uint80 roundId => Round) private rounds;

    error NotOwner();
    error NoDataPresent(uint80 roundId);

    constructor(uint8 decimals_, string memory description_) {
        owner = msg.sender;
        decimals = decimals_;
        description = description_;
    }

    /// @notice Write round `roundId` (answeredInRound = roundId).
    function setRound(uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt)
        external
    {
        setRoundAnsweredIn(roundId, answer, startedAt, updatedAt, roundId);
    }

    /// @notice Write round `roundId` with an explicit answeredInRound (a carried-over answer).
    function setRoundAnsweredIn(
        uint80 roundId,
        int256 answer,
        uint256 startedAt,
        uint256 updatedAt,
        uint80 answeredInRound
    ) public {
        if (msg.sender != owner) revert NotOwner();
        rounds[roundId] = Round(answer, startedAt, updatedAt, answeredInRound, true);
        if (roundId > latestRound) latestRound = roundId;
    }

    function version() external pure override returns (uint256) {
        return 4;
    }

    function getRoundData(uint80 roundId)
        public
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        Round memory round = rounds[roundId];
        if (!round.exists) revert NoDataPresent(roundId);
        return (roundId, round.answer, round.startedAt, round.updatedAt, round.answeredInRound);
    }

    function latestRoundData()
        external
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        return getRoundData(latestRound);
    }
}
